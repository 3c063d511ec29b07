// Package api serves the Connect-RPC API: handlers, OAuth 2 bearer-token
// authentication, tenant scoping, TLS 1.3 listeners and the live stream hub.
//
// It is the only place where errors become Connect codes. It must not apply
// domain rules or bypass tenant scoping.
package api
