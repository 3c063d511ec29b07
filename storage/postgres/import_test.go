package postgres

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func countDevices(t *testing.T, e *env) int {
	t.Helper()
	var n int
	if err := e.admin(t).QueryRow(testCtx(t), `SELECT count(*) FROM legiond.devices`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestImportBadRows(t *testing.T) {
	e := newEnv(t)
	w := buildWorld(t, e)
	ctx := testCtx(t)
	site, tap := w.A.Site.ID, w.A.Tap.ID
	// Line numbers count every physical line, header = 1, including the
	// comment and the quoted field spanning two lines.
	csv := strings.Join([]string{
		"DevEUI,activation,name,site_id,tap_point_id,join_eui,app_key,dev_addr,nwk_s_key,app_s_key",                                       // 1
		"70B3D57ED0010001,OTAA,ok otaa,," + tap.String() + ",70B3D57ED0FFFFFF,2B7E151628AED2A6ABF7158809CF4F3C,,,",                        // 2
		"70B3D57ED0010002,ABP,ok abp," + site.String() + ",,,,26011F01,2B7E151628AED2A6ABF7158809CF4F3C,3C4FCF098815F7ABA6D2AE2816157E2B", // 3
		"# a comment line", // 4
		"70B3D57ED00100,OTAA,short eui,,,70B3D57ED0FFFFFF,2B7E151628AED2A6ABF7158809CF4F3C,,,",                                       // 5
		"70B3D57ED0010003,OTAA,no key,,,70B3D57ED0FFFFFF,,,,",                                                                        // 6
		"70B3D57ED0010004,OTAA,bad key,,,70B3D57ED0FFFFFF,2B7E1516,,,",                                                               // 7
		"70B3D57ED0010001,OTAA,dup in file,,,70B3D57ED0FFFFFF,2B7E151628AED2A6ABF7158809CF4F3C,,,",                                   // 8
		w.B.Device.String() + ",OTAA,taken by B,,,70B3D57ED0FFFFFF,2B7E151628AED2A6ABF7158809CF4F3C,,,",                              // 9
		"70B3D57ED0010005,OTAA,other tenant site," + w.B.Site.ID.String() + ",,70B3D57ED0FFFFFF,2B7E151628AED2A6ABF7158809CF4F3C,,,", // 10
		"70B3D57ED0010006,FOO,bad activation,,,,,,,",                                                                                 // 11
		"70B3D57ED0010007,OTAA,\"two",                                    // 12
		"lines\",,,70B3D57ED0FFFFFF,2B7E151628AED2A6ABF7158809CF4F3C,,,", // 13
		"70B3D57ED0010008,OTAA,too few fields",                           // 14
		"70B3D57ED0010009,OTAA," + strings.Repeat("n", 201) + ",,,70B3D57ED0FFFFFF,2B7E151628AED2A6ABF7158809CF4F3C,,,", // 15
		"",
	}, "\n")
	want := []struct {
		line  int
		field string
		has   string
	}{
		{5, "dev_eui", "16 hex digits"},
		{6, "app_key", "required for OTAA"},
		{7, "app_key", "32 hex digits"},
		{8, "dev_eui", "duplicate of line 2"},
		{9, "dev_eui", "already registered"},
		{10, "site_id", "no such site"},
		{11, "activation", "ABP or OTAA"},
		{12, "name", "control characters"}, // a quoted name may not hide a line break
		{14, "", "fields"},
		{15, "name", "at most 200"},
	}
	before := countDevices(t, e)
	rep, err := e.store.ImportDevices(ctx, CustomerScope(w.A.Customer.ID, "installer"), strings.NewReader(csv), ImportOptions{})
	if !errors.Is(err, ErrImportRejected) || !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("want ErrImportRejected, got %v", err)
	}
	if got := countDevices(t, e); got != before {
		t.Fatalf("rejected import wrote %d devices", got-before)
	}
	if rep.Rows != 12 || rep.Imported != 0 {
		t.Errorf("report: rows %d imported %d", rep.Rows, rep.Imported)
	}
	byLine := map[int]RowError{}
	for _, re := range rep.Errors {
		if _, dup := byLine[re.Line]; !dup {
			byLine[re.Line] = re
		}
		for _, k := range []string{"2B7E151628AED2A6ABF7158809CF4F3C", "3C4FCF098815F7ABA6D2AE2816157E2B"} {
			if strings.Contains(re.String(), k) {
				t.Errorf("row error echoes a key: %s", re)
			}
		}
	}
	for _, wnt := range want {
		got, ok := byLine[wnt.line]
		if !ok {
			t.Errorf("line %d: no error reported (all: %v)", wnt.line, rep.Errors)
			continue
		}
		if got.Field != wnt.field || !strings.Contains(got.Reason, wnt.has) {
			t.Errorf("line %d: got %s, want field %q containing %q", wnt.line, got, wnt.field, wnt.has)
		}
	}
	if len(byLine) != len(want) {
		t.Errorf("bad lines: got %d (%v), want %d", len(byLine), rep.Errors, len(want))
	}

	// Skip mode writes the good rows (2 and 3).
	rep, err = e.store.ImportDevices(ctx, CustomerScope(w.A.Customer.ID, "installer"), strings.NewReader(csv), ImportOptions{SkipBadRows: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Imported != 2 || rep.Skipped != 10 || len(rep.Errors) < 10 {
		t.Fatalf("skip mode: %+v", rep)
	}
	if got := countDevices(t, e); got != before+2 {
		t.Fatalf("skip mode wrote %d devices, want 2", got-before)
	}
	e.inTx(t, CustomerScope(w.A.Customer.ID, "t"), func(tx *Tx) error {
		eui, _ := ParseEUI64("70B3D57ED0010001")
		d, err := tx.Devices().Get(ctx, eui)
		if err != nil {
			return err
		}
		if d.TapPointID == nil || *d.TapPointID != tap || d.SiteID == nil || *d.SiteID != site || d.CustomerID != w.A.Customer.ID {
			t.Errorf("placement from tap point: %+v", d)
		}
		k, err := tx.Devices().Keys(ctx, eui)
		if err != nil {
			return err
		}
		if k.AppKey == nil || k.AppKey.Hex() != "2B7E151628AED2A6ABF7158809CF4F3C" {
			t.Error("imported AppKey does not round-trip")
		}
		return nil
	})
}

func TestImportHeaderAndLimits(t *testing.T) {
	e := newEnv(t)
	w := buildWorld(t, e)
	ctx := testCtx(t)
	scope := CustomerScope(w.A.Customer.ID, "t")
	for _, tc := range []struct {
		name, csv string
		opts      ImportOptions
		has       string
	}{
		{"empty", "", ImportOptions{}, "empty"},
		{"unknown column", "dev_eui,activation,colour\n", ImportOptions{}, "unknown column"},
		{"missing activation", "dev_eui,name\n", ImportOptions{}, "activation"},
		{"duplicate column", "dev_eui,activation,DevEUI\n", ImportOptions{}, "twice"},
		{"too many rows", "dev_eui,activation\n0000000000000001,OTAA\n0000000000000002,OTAA\n", ImportOptions{MaxRows: 1}, "more than 1 rows"},
		{"too large", "dev_eui,activation\n" + strings.Repeat("0000000000000001,OTAA\n", 100), ImportOptions{MaxBytes: 200}, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.store.ImportDevices(ctx, scope, strings.NewReader(tc.csv), tc.opts)
			if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tc.has) {
				t.Fatalf("want invalid argument containing %q, got %v", tc.has, err)
			}
		})
	}
	// Under the platform scope rows need a customer: from the options or
	// the row.
	csv := "dev_eui,activation,join_eui,app_key,customer_id\n" +
		"70B3D57ED0020001,OTAA,70B3D57ED0FFFFFF,2B7E151628AED2A6ABF7158809CF4F3C,\n" +
		"70B3D57ED0020002,OTAA,70B3D57ED0FFFFFF,2B7E151628AED2A6ABF7158809CF4F3C," + w.C.Customer.ID.String() + "\n"
	rep, err := e.store.ImportDevices(ctx, PlatformScope("t"), strings.NewReader(csv), ImportOptions{})
	if err == nil || len(rep.Errors) != 1 || rep.Errors[0].Line != 2 || rep.Errors[0].Field != "customer_id" {
		t.Fatalf("platform import without customer: %+v %v", rep, err)
	}
	rep, err = e.store.ImportDevices(ctx, PlatformScope("t"), strings.NewReader(csv), ImportOptions{CustomerID: w.D.Customer.ID})
	if err != nil || rep.Imported != 2 {
		t.Fatalf("platform import: %+v %v", rep, err)
	}
	// A partner cannot import into another partner's customer.
	csv = "dev_eui,activation,join_eui,app_key,customer_id\n" +
		"70B3D57ED0030001,OTAA,70B3D57ED0FFFFFF,2B7E151628AED2A6ABF7158809CF4F3C," + w.C.Customer.ID.String() + "\n"
	rep, err = e.store.ImportDevices(ctx, PartnerScope(w.P1.Partner.ID, "t"), strings.NewReader(csv), ImportOptions{})
	if err == nil || len(rep.Errors) != 1 || rep.Errors[0].Reason != "no such customer" {
		t.Fatalf("partner import into a foreign customer: %+v %v", rep, err)
	}
}

// importCSV builds n OTAA+ABP rows for site.
func importCSV(n int, base uint64, site string) string {
	var b strings.Builder
	b.Grow(n * 150)
	b.WriteString("dev_eui,activation,site_id,join_eui,app_key,dev_addr,nwk_s_key,app_s_key,name\n")
	for i := 0; i < n; i++ {
		eui := fmt.Sprintf("%016X", base+uint64(i))
		if i%2 == 0 {
			fmt.Fprintf(&b, "%s,OTAA,%s,70B3D57ED0FFFFFF,%032X,,,,clip %d\n", eui, site, uint64(i+1)<<20|0xABCDEF, i)
		} else {
			fmt.Fprintf(&b, "%s,ABP,%s,,,%08X,%032X,%032X,clip %d\n", eui, site, uint32(base)+uint32(i), uint64(i+1)<<24|0x123, uint64(i+1)<<28|0x456, i)
		}
	}
	return b.String()
}

func TestImport10kUnder5s(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	e := newEnv(t)
	w := buildWorld(t, e)
	ctx := testCtx(t)
	csv := importCSV(10000, 0x70B3D57E00000000, w.A.Site.ID.String())
	rep, err := e.store.ImportDevices(ctx, CustomerScope(w.A.Customer.ID, "installer"), strings.NewReader(csv), ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Imported != 10000 {
		t.Fatalf("imported %d", rep.Imported)
	}
	t.Logf("10,000 devices imported in %v", rep.Duration)
	if rep.Duration > 5*1e9 {
		t.Errorf("import took %v, goal < 5s", rep.Duration)
	}
}

func BenchmarkImport10k(b *testing.B) {
	e := newEnv(b)
	w := buildWorld(b, e)
	ctx := testCtx(b)
	scope := CustomerScope(w.A.Customer.ID, "bench")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		csv := importCSV(10000, 0x7100000000000000+uint64(i)*100000, w.A.Site.ID.String())
		b.StartTimer()
		rep, err := e.store.ImportDevices(ctx, scope, strings.NewReader(csv), ImportOptions{})
		if err != nil || rep.Imported != 10000 {
			b.Fatalf("%+v %v", rep, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/10k-devices")
}
