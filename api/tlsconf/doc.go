// Package tlsconf builds the TLS configurations of every Legiond listener
// and client: TLS 1.3 only, ALPN h2 and http/1.1, certificates from files
// or from a development CA generated into the data folder.
//
// It owns the development CA's files (<dir>/tls/ca.pem, ca-key.pem,
// server.pem, server-key.pem): it creates them, reuses them while they are
// valid and renews them when they are not. Those files are for development
// and tests only; production points ServerConfig at real certificate files.
//
// It must not lower the minimum TLS version for anyone: a TLS 1.2 client is
// refused at the handshake, on the API and between cluster members alike.
package tlsconf
