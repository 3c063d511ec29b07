// Package server assembles Legiond's API listener: one http.Server on
// TLS 1.3 (HTTP/2 and HTTP/1.1) serving Connect, gRPC and gRPC-Web, with
// gRPC health and reflection, the embedded token issuer's endpoints when
// there is one, and the service handlers that other packages mount.
//
// Every handler built with Server.HandlerOptions is authenticated (bearer
// tokens, unary and streaming alike), rate limited per client, bounded in
// message size and strict about unknown fields. Health and reflection are
// the only procedures callable without a token.
//
// It owns the listener and its lifecycle (Start, Shutdown). It must not
// implement services or apply tenant rules: handlers do that with the
// Principal that auth puts into the context. It sets no WriteTimeout,
// which would cut server streams.
package server
