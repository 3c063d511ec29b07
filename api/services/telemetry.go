package services

import (
	"cmp"
	"container/heap"
	"context"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/legionelladossier/legiond/api/auth"
	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	"github.com/legionelladossier/legiond/proto/legiond/api/v1/apiv1connect"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/storage/pebblestore"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// ListReadings returns the readings of a device or a site over a period,
// oldest first, from the recent-event window.
func (s *Services) ListReadings(ctx context.Context, req *connect.Request[apiv1.ListReadingsRequest]) (*connect.Response[apiv1.ListReadingsResponse], error) {
	m := req.Msg
	evs, next, err := s.listEvents(ctx, apiv1connect.TelemetryServiceListReadingsProcedure, eventQuery{
		kind: "readings", devEUI: m.GetDevEui(), siteID: m.GetSiteId(), period: m.GetPeriod(),
		pageSize: m.GetPageSize(), pageToken: m.GetPageToken(),
		keep: func(ev *twinv1.TwinEvent) bool { return ev.GetReading() != nil },
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.ListReadingsResponse{Readings: evs, NextPageToken: next}), nil
}

// ListWaterEvents returns the flushes and disinfections of a device or a
// site over a period, oldest first, optionally only (non-)compliant ones.
func (s *Services) ListWaterEvents(ctx context.Context, req *connect.Request[apiv1.ListWaterEventsRequest]) (*connect.Response[apiv1.ListWaterEventsResponse], error) {
	m := req.Msg
	compliant := "any"
	if m.Compliant != nil {
		compliant = strconv.FormatBool(m.GetCompliant())
	}
	evs, next, err := s.listEvents(ctx, apiv1connect.TelemetryServiceListWaterEventsProcedure, eventQuery{
		kind: "water:" + compliant, devEUI: m.GetDevEui(), siteID: m.GetSiteId(), period: m.GetPeriod(),
		pageSize: m.GetPageSize(), pageToken: m.GetPageToken(),
		keep: func(ev *twinv1.TwinEvent) bool {
			w := ev.GetWaterEvent()
			return w != nil && (m.Compliant == nil || w.GetCompliant() == m.GetCompliant())
		},
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.ListWaterEventsResponse{WaterEvents: evs, NextPageToken: next}), nil
}

// eventQuery is a telemetry list request.
type eventQuery struct {
	kind           string // part of the page token's query key
	devEUI, siteID string
	period         *apiv1.Period
	pageSize       int32
	pageToken      string
	keep           func(*twinv1.TwinEvent) bool
}

// devRef is one device whose window is read.
type devRef struct {
	tenant string
	eui    pebblestore.EUI
	hex    string
}

// target resolves "exactly one of dev_eui and site_id" to the devices the
// caller may see.
func (s *Services) target(ctx context.Context, p *auth.Principal, devEUI, siteID string) ([]devRef, error) {
	if (devEUI == "") == (siteID == "") {
		return nil, invalid("dev_eui", "give exactly one of dev_eui and site_id")
	}
	if devEUI != "" {
		eui, err := parseEUI("dev_eui", devEUI, true)
		if err != nil {
			return nil, err
		}
		d, err := s.findDevice(ctx, p, eui, "device "+euiHex(eui))
		if err != nil {
			return nil, err
		}
		return []devRef{refOf(d)}, nil
	}
	id, err := parseID("site_id", siteID, true)
	if err != nil {
		return nil, err
	}
	site, err := s.findSite(ctx, p, id)
	if err != nil {
		return nil, err
	}
	ds, err := s.devicesIn(ctx, p, &site, s.d.MaxScanDevices)
	if err != nil {
		return nil, err
	}
	out := make([]devRef, len(ds))
	for i, d := range ds {
		out[i] = refOf(d)
	}
	return out, nil
}

func refOf(d postgres.Device) devRef {
	return devRef{tenant: d.CustomerID.String(), eui: pebblestore.EUI(d.DevEUI), hex: euiHex(d.DevEUI)}
}

func (s *Services) listEvents(ctx context.Context, op string, q eventQuery) ([]*twinv1.TwinEvent, string, error) {
	p, err := s.authorize(ctx, auth.ScopeReadingsRead)
	if err != nil {
		return nil, "", err
	}
	from, to, err := period(q.period, s.d.Now())
	if err != nil {
		return nil, "", err
	}
	size, err := pageSize(q.pageSize)
	if err != nil {
		return nil, "", err
	}
	// Without a period the window is "the last 24 hours" as of each page:
	// the cursor keeps the order, the window's end follows the clock.
	span := "last-24h"
	if q.period != nil {
		span = from.Format(time.RFC3339Nano) + "/" + to.Format(time.RFC3339Nano)
	}
	qk := queryKey(q.kind, q.devEUI, q.siteID, span)
	cur, err := decodePage(q.pageToken, qk, 3)
	if err != nil {
		return nil, "", err
	}
	var after *recKey
	if cur != nil {
		n, err := strconv.ParseInt(cur[0], 10, 64)
		if err != nil {
			return nil, "", invalid("page_token", "malformed")
		}
		after = &recKey{t: n, eui: cur[1], id: cur[2]}
	}
	devs, err := s.target(ctx, p, q.devEUI, q.siteID)
	if err != nil {
		return nil, "", s.toConnect(ctx, op, err)
	}
	items, err := s.mergeRecent(ctx, devs, from, to, after, size+1, q.keep)
	if err != nil {
		return nil, "", s.toConnect(ctx, op, err)
	}
	var next string
	if len(items) > size {
		items = items[:size]
		k := items[size-1].key
		next = encodePage(qk, strconv.FormatInt(k.t, 10), k.eui, k.id)
	}
	out := make([]*twinv1.TwinEvent, len(items))
	for i, it := range items {
		out[i] = it.ev
	}
	return out, next, nil
}

// recKey orders events across devices: event time, DevEUI, event id.
type recKey struct {
	t   int64
	eui string
	id  string
}

func (a recKey) cmp(b recKey) int {
	if c := cmp.Compare(a.t, b.t); c != 0 {
		return c
	}
	if c := cmp.Compare(a.eui, b.eui); c != 0 {
		return c
	}
	return cmp.Compare(a.id, b.id)
}

type recItem struct {
	key recKey
	ev  *twinv1.TwinEvent
}

// devIter walks one device's window in key order, in chunks.
type devIter struct {
	s     *Services
	dev   devRef
	from  time.Time
	to    time.Time
	last  *recKey // everything at or below it was consumed or skipped
	keep  func(*twinv1.TwinEvent) bool
	chunk int
	buf   []recItem
	done  bool
}

// fill reads the next chunk of records.
func (it *devIter) fill(ctx context.Context) error {
	recs, err := it.s.d.Recent.RecentEvents(ctx, it.dev.tenant, it.dev.eui, it.from, it.to, it.chunk)
	if err != nil {
		return err
	}
	if len(recs) < it.chunk {
		it.done = true
	}
	progressed := false
	for _, r := range recs {
		k := recKey{t: r.Time.UnixNano(), eui: it.dev.hex, id: r.ID}
		if it.last != nil && k.cmp(*it.last) <= 0 {
			continue
		}
		progressed = true
		kk := k
		it.last = &kk
		ev := new(twinv1.TwinEvent)
		if proto.Unmarshal(r.Payload, ev) != nil || !it.keep(ev) {
			continue
		}
		it.buf = append(it.buf, recItem{key: k, ev: ev})
	}
	if len(recs) > 0 {
		// Re-read from the newest instant (inclusive): records at the same
		// instant beyond the chunk are not lost, and those already seen are
		// skipped by key.
		if newest := recs[len(recs)-1].Time; newest.After(it.from) {
			it.from = newest
		} else if !progressed || len(recs) == it.chunk {
			it.chunk *= 2 // a whole chunk at one instant: widen
		}
	}
	return nil
}

// head returns the iterator's next item, or nil when it is exhausted.
func (it *devIter) head(ctx context.Context) (*recItem, error) {
	for len(it.buf) == 0 && !it.done {
		if err := it.fill(ctx); err != nil {
			return nil, err
		}
	}
	if len(it.buf) == 0 {
		return nil, nil
	}
	return &it.buf[0], nil
}

type iterHeap []*devIter

func (h iterHeap) Len() int           { return len(h) }
func (h iterHeap) Less(i, j int) bool { return h[i].buf[0].key.cmp(h[j].buf[0].key) < 0 }
func (h iterHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *iterHeap) Push(x any)        { *h = append(*h, x.(*devIter)) }
func (h *iterHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// mergeRecent returns up to limit kept events of devs in [from, to) after
// the cursor, in key order: a k-way merge of the devices' windows, each
// read lazily in chunks.
func (s *Services) mergeRecent(ctx context.Context, devs []devRef, from, to time.Time, after *recKey, limit int, keep func(*twinv1.TwinEvent) bool) ([]recItem, error) {
	chunk := min(limit, 256)
	h := make(iterHeap, 0, len(devs))
	for _, d := range devs {
		it := &devIter{s: s, dev: d, from: from, to: to, keep: keep, chunk: chunk}
		if after != nil {
			a := *after
			it.last = &a
			if t := time.Unix(0, after.t); t.After(from) {
				it.from = t
			}
		}
		first, err := it.head(ctx)
		if err != nil {
			return nil, err
		}
		if first != nil {
			h = append(h, it)
		}
	}
	heap.Init(&h)
	var out []recItem
	for len(h) > 0 && len(out) < limit {
		it := h[0]
		out = append(out, it.buf[0])
		it.buf = it.buf[1:]
		next, err := it.head(ctx)
		if err != nil {
			return nil, err
		}
		if next == nil {
			heap.Pop(&h)
		} else {
			heap.Fix(&h, 0)
		}
	}
	return out, nil
}
