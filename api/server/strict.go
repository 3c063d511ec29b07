package server

import (
	"context"
	"fmt"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// strictInput refuses request messages carrying fields the schema does
// not know, with InvalidArgument naming the field. The JSON codec already
// refuses unknown JSON keys; the binary codec keeps unknown fields
// silently, which would hide client bugs (a field sent under a number the
// server does not have).
type strictInput struct{}

var _ connect.Interceptor = (*strictInput)(nil)

func (strictInput) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if !req.Spec().IsClient {
			if m, ok := req.Any().(proto.Message); ok {
				if err := checkUnknown(m.ProtoReflect(), ""); err != nil {
					return nil, err
				}
			}
		}
		return next(ctx, req)
	}
}

func (strictInput) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (strictInput) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		return next(ctx, &strictConn{StreamingHandlerConn: conn})
	}
}

type strictConn struct {
	connect.StreamingHandlerConn
}

func (c *strictConn) Receive(msg any) error {
	if err := c.StreamingHandlerConn.Receive(msg); err != nil {
		return err
	}
	if m, ok := msg.(proto.Message); ok {
		return checkUnknown(m.ProtoReflect(), "")
	}
	return nil
}

// checkUnknown walks m and its set message fields; at is the field path
// so far ("period", "items[2]").
func checkUnknown(m protoreflect.Message, at string) error {
	if u := m.GetUnknown(); len(u) > 0 {
		num, _, _ := protowire.ConsumeTag(u)
		where := string(m.Descriptor().FullName())
		if at != "" {
			where = at + " (" + where + ")"
		}
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("unknown field number %d in %s", num, where))
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := string(fd.Name())
		if at != "" {
			name = at + "." + name
		}
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = checkUnknown(l.Get(i).Message(), fmt.Sprintf("%s[%d]", name, i))
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				err = checkUnknown(mv.Message(), fmt.Sprintf("%s[%v]", name, k.Interface()))
				return err == nil
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			err = checkUnknown(v.Message(), name)
		}
		return err == nil
	})
	return err
}
