// Package services implements the Connect services of proto/legiond/api/v1:
// TwinService, TelemetryService, AlarmService, AdminService and
// ClusterService. Register mounts them on an api/server.Server.
//
// # Every handler
//
// takes the caller's Principal from the context (api/auth put it there),
// checks the role and scope the call needs (PermissionDenied otherwise),
// validates its input (InvalidArgument naming the field: ids are UUIDs or
// 16-hex-digit EUIs, page_size 0..500, periods start < end and at most 31
// days, enums known), and reads the registry under the caller's row-level
// security scope (postgres.Store.InTx with the principal's scope), so that
// another tenant's ids are simply not found: NotFound, never
// PermissionDenied with data. Site-restricted principals (technicians,
// narrowed viewers) see only their sites; anything else of their customer
// is NotFound too. Errors become Connect codes here and only here (see
// errors.go); unexpected ones are logged and answered Internal without
// detail.
//
// # What lives elsewhere
//
// The live twin state and alarm commands live in the actor system, which
// this package must not import (DESIGN §2): it declares the ports it needs
// (TwinReader, AlarmCommander, ClusterStatus) and the wiring in cmd
// implements them. Recent readings and events come from Pebble's recent
// window (RecentReader, implemented by pebblestore.Store); the archive will
// be another source behind the same handlers. Live streams come from
// api/hub, with a Filter built here from the principal.
//
// # Paging
//
// Page tokens are opaque (base64url JSON): a cursor (the sort key of the
// last item returned) bound to a hash of the request's filters, so a token
// replayed with other filters is InvalidArgument. Cursors, not offsets:
// rows added or removed between pages do not shift the pages.
//
// This package must not apply Legionella rules, must not bypass the
// registry's scoping (no platform scope built from a tenant's token) and
// must not log on hot paths.
package services
