package postgres

import (
	"bufio"
	"context"
	"crypto/cipher"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// ImportOptions configure a bulk device import.
type ImportOptions struct {
	// SkipBadRows writes the good rows and reports the bad ones. Default
	// false: any bad row rejects the whole file and nothing is written.
	SkipBadRows bool
	// CustomerID is the customer of rows that name no customer, site or
	// tap point. Default: the caller's customer in a customer scope.
	CustomerID uuid.UUID
	// MaxRows bounds the data rows. Default 100000.
	MaxRows int
	// MaxBytes bounds the input size. Default 64 MiB.
	MaxBytes int64
}

// Validate reports out-of-range options.
func (o *ImportOptions) Validate() error {
	if o.MaxRows < 0 {
		return fieldErr("max_rows", "must not be negative")
	}
	if o.MaxBytes < 0 {
		return fieldErr("max_bytes", "must not be negative")
	}
	return nil
}

// RowError is one problem of one CSV line. It never carries key values.
type RowError struct {
	Line   int    `json:"line"`
	DevEUI string `json:"dev_eui,omitempty"`
	Field  string `json:"field,omitempty"`
	Reason string `json:"reason"`
}

func (e RowError) String() string {
	if e.Field == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
	}
	return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Reason)
}

// ImportReport tells what an import did.
type ImportReport struct {
	Rows     int           `json:"rows"`     // data rows read
	Imported int           `json:"imported"` // rows written
	Skipped  int           `json:"skipped"`  // bad rows left out (SkipBadRows)
	Errors   []RowError    `json:"errors,omitempty"`
	Duration time.Duration `json:"duration"`
}

// ImportColumns are the accepted CSV header names (case, '_', '-' and
// spaces are ignored; app_eui is an alias of join_eui). dev_eui and
// activation are required; the rest may be absent or empty.
var ImportColumns = []string{
	"dev_eui", "activation", "name", "customer_id", "site_id", "tap_point_id",
	"join_eui", "dev_addr", "app_key", "nwk_s_key", "app_s_key", "expected_interval_s",
}

func normHeader(h string) string {
	h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
	h = strings.NewReplacer("_", "", "-", "", " ", "").Replace(h)
	if h == "appeui" {
		return "joineui"
	}
	return h
}

type importRow struct {
	line int
	dev  NewDevice
	refs resolvedRefs
	errs []RowError
}

func (r *importRow) fail(field, reason string) {
	r.errs = append(r.errs, RowError{Line: r.line, DevEUI: devEUIString(r.dev.DevEUI), Field: field, Reason: reason})
}

func devEUIString(e EUI64) string {
	if e.IsZero() {
		return ""
	}
	return e.String()
}

// ImportDevices imports devices from CSV in its own transaction under
// scope. See Tx.ImportDevices.
func (s *Store) ImportDevices(ctx context.Context, scope Scope, r io.Reader, opts ImportOptions) (ImportReport, error) {
	var rep ImportReport
	err := s.InTx(ctx, scope, func(tx *Tx) error {
		var err error
		rep, err = tx.ImportDevices(ctx, r, opts)
		return err
	})
	return rep, err
}

// ImportDevices validates every row (syntax, keys, references in the
// scope, duplicates in the file and in the registry), reports each bad
// row with its line number and reason, and writes the good rows with one
// COPY into a staging table and one INSERT (row-level security applies to
// the INSERT). Unless SkipBadRows is set, one bad row rejects the file:
// the error is ErrImportRejected (and ErrInvalidArgument), the report
// lists the bad rows, and nothing is written.
func (t *Tx) ImportDevices(ctx context.Context, r io.Reader, opts ImportOptions) (ImportReport, error) {
	start := time.Now()
	var rep ImportReport
	if err := opts.Validate(); err != nil {
		return rep, err
	}
	if opts.MaxRows == 0 {
		opts.MaxRows = 100000
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = 64 << 20
	}
	lr := &io.LimitedReader{R: r, N: opts.MaxBytes + 1}
	cr := csv.NewReader(bufio.NewReaderSize(lr, 64<<10))
	cr.FieldsPerRecord = -1
	cr.Comment = '#'
	cr.ReuseRecord = true

	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return rep, fieldErr("file", "empty: want a header line naming the columns")
		}
		return rep, fieldErr("file", "header: "+err.Error())
	}
	col := map[string]int{}
	known := map[string]bool{}
	for _, c := range ImportColumns {
		known[normHeader(c)] = true
	}
	for i, h := range header {
		n := normHeader(h)
		if !known[n] {
			return rep, fieldErr("header", fmt.Sprintf("unknown column %q (known: %s)", h, strings.Join(ImportColumns, ", ")))
		}
		if _, dup := col[n]; dup {
			return rep, fieldErr("header", fmt.Sprintf("column %q given twice", h))
		}
		col[n] = i
	}
	for _, req := range []string{"deveui", "activation"} {
		if _, ok := col[req]; !ok {
			return rep, fieldErr("header", fmt.Sprintf("missing required column %q", map[string]string{"deveui": "dev_eui", "activation": "activation"}[req]))
		}
	}

	var rows []*importRow
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if lr.N <= 0 {
			return rep, fieldErr("file", fmt.Sprintf("larger than %d bytes", opts.MaxBytes))
		}
		if len(rows) >= opts.MaxRows {
			return rep, fieldErr("file", fmt.Sprintf("more than %d rows", opts.MaxRows))
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			row := &importRow{line: pe.StartLine}
			row.fail("", "malformed CSV: "+pe.Err.Error())
			rows = append(rows, row)
			continue
		} else if err != nil {
			return rep, fmt.Errorf("import: read: %w", err)
		}
		line, _ := cr.FieldPos(0)
		row := &importRow{line: line}
		rows = append(rows, row)
		if len(rec) != len(header) {
			row.fail("", fmt.Sprintf("has %d fields, the header has %d", len(rec), len(header)))
			continue
		}
		parseImportRow(row, rec, col)
	}
	if lr.N <= 0 {
		return rep, fieldErr("file", fmt.Sprintf("larger than %d bytes", opts.MaxBytes))
	}
	rep.Rows = len(rows)

	if err := t.checkImportRows(ctx, rows, opts); err != nil {
		return rep, err
	}
	var good []*importRow
	for _, row := range rows {
		if len(row.errs) > 0 {
			rep.Errors = append(rep.Errors, row.errs...)
			continue
		}
		good = append(good, row)
	}
	bad := rep.Rows - len(good)
	if bad > 0 && !opts.SkipBadRows {
		rep.Duration = time.Since(start)
		return rep, fmt.Errorf("%w: %w: %d of %d rows are bad (first: %s); nothing was written",
			ErrImportRejected, ErrInvalidArgument, bad, rep.Rows, rep.Errors[0])
	}
	rep.Skipped = bad
	n, err := t.writeImport(ctx, good)
	if err != nil {
		return rep, err
	}
	rep.Imported = n
	rep.Duration = time.Since(start)
	return rep, nil
}

// parseImportRow decodes one record; problems go to row.errs.
func parseImportRow(row *importRow, rec []string, col map[string]int) {
	get := func(name string) string {
		if i, ok := col[name]; ok {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	d := &row.dev
	if v := get("deveui"); v == "" {
		row.fail("dev_eui", "is required")
	} else if e, err := ParseEUI64(v); err != nil {
		row.fail("dev_eui", err.Error())
	} else {
		d.DevEUI = e
	}
	if a, err := ParseActivation(get("activation")); err != nil {
		row.fail("activation", err.Error())
	} else {
		d.Activation = a
	}
	d.Name = get("name")
	ids := []struct {
		name, field string
		dst         **uuid.UUID
	}{{"siteid", "site_id", &d.SiteID}, {"tappointid", "tap_point_id", &d.TapPointID}}
	for _, f := range ids {
		if v := get(f.name); v != "" {
			id, err := uuid.Parse(v)
			if err != nil {
				row.fail(f.field, "not a UUID")
				continue
			}
			*f.dst = &id
		}
	}
	if v := get("customerid"); v != "" {
		id, err := uuid.Parse(v)
		if err != nil {
			row.fail("customer_id", "not a UUID")
		} else {
			d.CustomerID = id
		}
	}
	if v := get("joineui"); v != "" {
		if e, err := ParseEUI64(v); err != nil {
			row.fail("join_eui", err.Error())
		} else {
			d.JoinEUI = &e
		}
	}
	if v := get("devaddr"); v != "" {
		if a, err := ParseDevAddr(v); err != nil {
			row.fail("dev_addr", err.Error())
		} else {
			d.DevAddr = &a
		}
	}
	keys := []struct {
		name, field string
		dst         **AES128Key
	}{{"appkey", "app_key", &d.AppKey}, {"nwkskey", "nwk_s_key", &d.NwkSKey}, {"appskey", "app_s_key", &d.AppSKey}}
	for _, f := range keys {
		if v := get(f.name); v != "" {
			k, err := ParseAES128Key(v)
			if err != nil {
				row.fail(f.field, err.Error())
				continue
			}
			*f.dst = &k
		}
	}
	if v := get("expectedintervals"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			row.fail("expected_interval_s", "not a positive whole number of seconds")
		} else {
			d.ExpectedInterval = time.Duration(n) * time.Second
		}
	}
	if len(row.errs) > 0 {
		return
	}
	for _, fe := range d.validate() {
		row.fail(fe.Field, fe.Reason)
	}
}

// checkImportRows resolves references and finds duplicates, in a few
// set-based queries, for the rows that parsed.
func (t *Tx) checkImportRows(ctx context.Context, rows []*importRow, opts ImportOptions) error {
	var taps, sites, custs []uuid.UUID
	var euis [][]byte
	seenTap, seenSite, seenCust := map[uuid.UUID]bool{}, map[uuid.UUID]bool{}, map[uuid.UUID]bool{}
	firstLine := map[EUI64]int{}
	defCust := opts.CustomerID
	if defCust == uuid.Nil && t.scope.Kind == ScopeCustomer {
		defCust = t.scope.CustomerID
	}
	if defCust != uuid.Nil {
		custs, seenCust[defCust] = append(custs, defCust), true
	}
	for _, row := range rows {
		if len(row.errs) > 0 {
			continue
		}
		d := &row.dev
		if l, dup := firstLine[d.DevEUI]; dup {
			row.fail("dev_eui", fmt.Sprintf("duplicate of line %d", l))
			continue
		}
		firstLine[d.DevEUI] = row.line
		euis = append(euis, append([]byte(nil), d.DevEUI[:]...))
		if d.TapPointID != nil && !seenTap[*d.TapPointID] {
			taps, seenTap[*d.TapPointID] = append(taps, *d.TapPointID), true
		}
		if d.SiteID != nil && !seenSite[*d.SiteID] {
			sites, seenSite[*d.SiteID] = append(sites, *d.SiteID), true
		}
		if d.CustomerID != uuid.Nil && !seenCust[d.CustomerID] {
			custs, seenCust[d.CustomerID] = append(custs, d.CustomerID), true
		}
	}
	type tapInfo struct{ site, cust uuid.UUID }
	tapOf := map[uuid.UUID]tapInfo{}
	siteOf := map[uuid.UUID]uuid.UUID{}
	custOK := map[uuid.UUID]bool{}
	taken := map[EUI64]bool{}
	if len(taps) > 0 {
		rs, err := t.tx.Query(ctx, `SELECT id, site_id, customer_id FROM tap_points WHERE id = ANY($1)`, taps)
		if err != nil {
			return mapErr("import: tap points", err)
		}
		var id uuid.UUID
		var ti tapInfo
		if _, err := pgx.ForEachRow(rs, []any{&id, &ti.site, &ti.cust}, func() error { tapOf[id] = ti; return nil }); err != nil {
			return mapErr("import: tap points", err)
		}
	}
	if len(sites) > 0 {
		rs, err := t.tx.Query(ctx, `SELECT id, customer_id FROM sites WHERE id = ANY($1)`, sites)
		if err != nil {
			return mapErr("import: sites", err)
		}
		var id, c uuid.UUID
		if _, err := pgx.ForEachRow(rs, []any{&id, &c}, func() error { siteOf[id] = c; return nil }); err != nil {
			return mapErr("import: sites", err)
		}
	}
	if len(custs) > 0 {
		rs, err := t.tx.Query(ctx, `SELECT id FROM customers WHERE id = ANY($1)`, custs)
		if err != nil {
			return mapErr("import: customers", err)
		}
		var id uuid.UUID
		if _, err := pgx.ForEachRow(rs, []any{&id}, func() error { custOK[id] = true; return nil }); err != nil {
			return mapErr("import: customers", err)
		}
	}
	if len(euis) > 0 {
		rs, err := t.tx.Query(ctx, `SELECT legiond.dev_euis_taken($1)`, euis)
		if err != nil {
			return mapErr("import: duplicates", err)
		}
		var b []byte
		if _, err := pgx.ForEachRow(rs, []any{&b}, func() error {
			var e EUI64
			copy(e[:], b)
			taken[e] = true
			return nil
		}); err != nil {
			return mapErr("import: duplicates", err)
		}
	}
	for _, row := range rows {
		if len(row.errs) > 0 {
			continue
		}
		d := &row.dev
		if taken[d.DevEUI] {
			row.fail("dev_eui", "already registered")
			continue
		}
		cust, site := d.CustomerID, optID(d.SiteID)
		switch {
		case d.TapPointID != nil:
			ti, ok := tapOf[*d.TapPointID]
			if !ok {
				row.fail("tap_point_id", "no such tap point")
				continue
			}
			if site != uuid.Nil && site != ti.site {
				row.fail("site_id", "the tap point belongs to another site")
				continue
			}
			if cust != uuid.Nil && cust != ti.cust {
				row.fail("customer_id", "the tap point belongs to another customer")
				continue
			}
			s := ti.site
			row.refs = resolvedRefs{customer: ti.cust, site: &s, tap: d.TapPointID}
		case site != uuid.Nil:
			sc, ok := siteOf[site]
			if !ok {
				row.fail("site_id", "no such site")
				continue
			}
			if cust != uuid.Nil && cust != sc {
				row.fail("customer_id", "the site belongs to another customer")
				continue
			}
			row.refs = resolvedRefs{customer: sc, site: &site}
		default:
			if cust == uuid.Nil {
				cust = defCust
			}
			if cust == uuid.Nil {
				row.fail("customer_id", "is required (or a site_id or tap_point_id)")
				continue
			}
			if !custOK[cust] {
				row.fail("customer_id", "no such customer")
				continue
			}
			row.refs = resolvedRefs{customer: cust}
		}
	}
	return nil
}

// writeImport seals the keys and writes the rows: COPY into a temporary
// staging table (COPY FROM does not apply row-level security, so it never
// targets a registry table directly), then one INSERT ... SELECT that the
// policies check row by row.
func (t *Tx) writeImport(ctx context.Context, rows []*importRow) (int, error) {
	if len(rows) == 0 {
		return 0, nil
	}
	type dk struct {
		id uuid.UUID
		a  cipher.AEAD
	}
	keys := map[uuid.UUID]dk{}
	data := make([][]any, 0, len(rows))
	for _, row := range rows {
		d := &row.dev
		var sk sealedKeys
		if d.AppKey != nil || d.NwkSKey != nil || d.AppSKey != nil {
			k, ok := keys[row.refs.customer]
			if !ok {
				id, a, err := t.dataKey(ctx, row.refs.customer)
				if err != nil {
					return 0, fmt.Errorf("import: %w", err)
				}
				k = dk{id, a}
				keys[row.refs.customer] = k
			}
			var err error
			if sk, err = sealDeviceKeys(k.id, k.a, d); err != nil {
				return 0, fmt.Errorf("import: %w", err)
			}
		}
		data = append(data, []any{
			d.DevEUI[:], row.refs.customer, row.refs.site, row.refs.tap, d.Name, string(d.Activation),
			euiBytes(d.JoinEUI), addrBytes(d.DevAddr), sk.dataKey, sk.appKey, sk.nwkSKey, sk.appSKey,
			int32(d.ExpectedInterval / time.Second),
		})
	}
	cols := []string{"dev_eui", "customer_id", "site_id", "tap_point_id", "name", "activation",
		"join_eui", "dev_addr", "data_key_id", "app_key_enc", "nwk_s_key_enc", "app_s_key_enc", "expected_interval_s"}
	if _, err := t.tx.Exec(ctx, `CREATE TEMP TABLE import_devices (
		dev_eui bytea, customer_id uuid, site_id uuid, tap_point_id uuid, name text, activation text,
		join_eui bytea, dev_addr bytea, data_key_id uuid, app_key_enc bytea, nwk_s_key_enc bytea,
		app_s_key_enc bytea, expected_interval_s integer) ON COMMIT DROP`); err != nil {
		return 0, mapErr("import: staging table", err)
	}
	if _, err := t.tx.CopyFrom(ctx, pgx.Identifier{"import_devices"}, cols, pgx.CopyFromRows(data)); err != nil {
		return 0, mapErr("import: copy", err)
	}
	list := strings.Join(cols, ", ")
	tag, err := t.tx.Exec(ctx, `INSERT INTO devices (`+list+`) SELECT `+list+` FROM import_devices`)
	if err != nil {
		return 0, mapErr("import: insert", err)
	}
	if _, err := t.tx.Exec(ctx, `DROP TABLE import_devices`); err != nil {
		return 0, mapErr("import: drop staging table", err)
	}
	return int(tag.RowsAffected()), nil
}
