package postgres

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKeysNotStoredInClear reads the raw tables (as superuser, bypassing
// row-level security) and, after a checkpoint, the table files on disk,
// and finds none of the device keys, in binary or hex.
func TestKeysNotStoredInClear(t *testing.T) {
	e := newEnv(t)
	w := buildWorld(t, e)
	ctx := testCtx(t)
	admin := e.admin(t)

	appKey := randKey(t)
	join := nextEUI(0x01)
	otaa := nextEUI(0x71)
	e.inTx(t, CustomerScope(w.A.Customer.ID, "t"), func(tx *Tx) error {
		_, err := tx.Devices().Create(ctx, NewDevice{DevEUI: otaa, Activation: OTAA, JoinEUI: &join, AppKey: &appKey})
		return err
	})
	var secrets [][]byte
	for _, f := range []tenantFixture{w.A, w.B, w.C, w.D} {
		secrets = append(secrets, f.Keys.NwkSKey[:], f.Keys.AppSKey[:])
	}
	secrets = append(secrets, appKey[:])
	needles := func(k []byte) [][]byte {
		return [][]byte{k, []byte(hex.EncodeToString(k)), []byte(strings.ToUpper(hex.EncodeToString(k)))}
	}

	// 1. Every column of every row, as bytes and as text.
	for _, table := range []string{"devices", "data_keys"} {
		rows, err := admin.Query(ctx, `SELECT t::text, t.* FROM legiond.`+table+` t`)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			n++
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				var hay []byte
				switch x := v.(type) {
				case []byte:
					hay = x
				case string:
					hay = []byte(x)
				default:
					continue
				}
				for _, s := range secrets {
					for _, nd := range needles(s) {
						if bytes.Contains(hay, nd) {
							t.Fatalf("%s holds a device key in the clear", table)
						}
					}
				}
			}
		}
		if rows.Err() != nil || n == 0 {
			t.Fatalf("%s: %d rows, err %v", table, n, rows.Err())
		}
	}

	// 2. The table files themselves (private server only).
	if !e.db.Server.Private() {
		t.Log("external server: skipping the on-disk scan")
	} else {
		if _, err := admin.Exec(ctx, `CHECKPOINT`); err != nil {
			t.Fatal(err)
		}
		var files []string
		markers := [][]byte{w.A.Device[:], w.A.Customer.ID[:]}
		for _, table := range []string{"devices", "data_keys"} {
			var p string
			if err := admin.QueryRow(ctx, `SELECT pg_relation_filepath('legiond.`+table+`')`).Scan(&p); err != nil {
				t.Fatal(err)
			}
			files = append(files, filepath.Join(e.db.Server.DataDir(), p))
		}
		scanned := 0
		for i, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			scanned += len(b)
			for _, s := range secrets {
				for _, nd := range needles(s) {
					if bytes.Contains(b, nd) {
						t.Fatalf("%s holds a device key in the clear", f)
					}
				}
			}
			// Sanity: the file holds the rows (DevEUI, customer id in binary).
			if !bytes.Contains(b, markers[i]) {
				t.Fatalf("%s does not look like the table file", f)
			}
		}
		t.Logf("scanned %d bytes of table files", scanned)
	}

	// 3. The keys do come back through the repository.
	e.inTx(t, CustomerScope(w.A.Customer.ID, "t"), func(tx *Tx) error {
		k, err := tx.Devices().Keys(ctx, otaa)
		if err != nil {
			return err
		}
		if k.AppKey == nil || *k.AppKey != appKey || k.NwkSKey != nil {
			t.Fatalf("keys round trip: %+v", k)
		}
		k, err = tx.Devices().Keys(ctx, w.A.Device)
		if err != nil {
			return err
		}
		if *k.NwkSKey != *w.A.Keys.NwkSKey || *k.AppSKey != *w.A.Keys.AppSKey {
			t.Fatal("session keys round trip")
		}
		return nil
	})
}

// TestCiphertextBoundToRowAndColumn swaps ciphertexts between columns and
// rows; decryption must fail rather than hand out the wrong key.
func TestCiphertextBoundToRowAndColumn(t *testing.T) {
	e := newEnv(t)
	w := buildWorld(t, e)
	ctx := testCtx(t)
	admin := e.admin(t)
	if _, err := admin.Exec(ctx, `UPDATE legiond.devices SET nwk_s_key_enc = app_s_key_enc WHERE dev_eui = $1`, w.A.Device[:]); err != nil {
		t.Fatal(err)
	}
	err := e.store.InTx(ctx, PlatformScope("t"), func(tx *Tx) error {
		_, err := tx.Devices().Keys(ctx, w.A.Device)
		return err
	})
	if !errors.Is(err, ErrDecrypt) {
		t.Fatalf("column swap: want ErrDecrypt, got %v", err)
	}
	if _, err := admin.Exec(ctx, `UPDATE legiond.devices SET app_s_key_enc = (SELECT app_s_key_enc FROM legiond.devices WHERE dev_eui = $2) WHERE dev_eui = $1`,
		w.B.Device[:], w.A.Device[:]); err != nil {
		t.Fatal(err)
	}
	err = e.store.InTx(ctx, PlatformScope("t"), func(tx *Tx) error {
		_, err := tx.Devices().Keys(ctx, w.B.Device)
		return err
	})
	if !errors.Is(err, ErrDecrypt) {
		t.Fatalf("row swap: want ErrDecrypt, got %v", err)
	}
}

// TestWrongMasterKey: a store with another master key cannot decrypt, and
// a key ring holding the old key as retired can.
func TestWrongMasterKey(t *testing.T) {
	e := newEnv(t)
	w := buildWorld(t, e)
	ctx := testCtx(t)
	other, _ := GenerateMasterKey()
	kr, _ := NewKeyRing(other)
	st, err := Open(ctx, Config{DSN: e.appDSN(), KeyRing: kr})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.InTx(ctx, PlatformScope("t"), func(tx *Tx) error {
		_, err := tx.Devices().Keys(ctx, w.A.Device)
		return err
	})
	if !errors.Is(err, ErrDecrypt) {
		t.Fatalf("want ErrDecrypt, got %v", err)
	}
	rotated, _ := NewKeyRing(other, e.keys.primary)
	st2, err := Open(ctx, Config{DSN: e.appDSN(), KeyRing: rotated})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if err := st2.InTx(ctx, PlatformScope("t"), func(tx *Tx) error {
		_, err := tx.Devices().Keys(ctx, w.A.Device)
		return err
	}); err != nil {
		t.Fatalf("retired master key should still unwrap: %v", err)
	}
}

func TestMasterKeyLoading(t *testing.T) {
	dir := t.TempDir()
	mk, path, err := LoadOrCreateDevMasterKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(filepath.Base(path), "DEVELOPMENT") {
		t.Errorf("dev key file name %q lacks the DEVELOPMENT marker", path)
	}
	body, _ := os.ReadFile(path)
	if !strings.Contains(string(body), "DEVELOPMENT ONLY") || !strings.Contains(string(body), "NOT FOR PRODUCTION") {
		t.Errorf("dev key file lacks the warning:\n%s", body)
	}
	again, _, err := LoadOrCreateDevMasterKey(dir)
	if err != nil || again.ID() != mk.ID() {
		t.Fatalf("dev key not reused: %v", err)
	}
	if strings.Contains(mk.String(), hex.EncodeToString(mk.key[:])) {
		t.Error("MasterKey.String prints the key")
	}

	hexKey := hex.EncodeToString(mk.key[:])
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == MasterKeyEnv {
				return v
			}
			return ""
		}
	}
	if got, err := LoadMasterKey("", env(hexKey)); err != nil || got.ID() != mk.ID() {
		t.Errorf("from env: %v", err)
	}
	if _, err := LoadMasterKey("", env("")); !errors.Is(err, ErrNoKeyRing) {
		t.Errorf("no key: %v", err)
	}
	open := filepath.Join(dir, "open.key")
	if err := os.WriteFile(open, []byte(hexKey), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadMasterKey(open, env("")); err == nil {
		t.Error("world-readable key file accepted")
	}
	for _, bad := range []string{"", "abc", strings.Repeat("0", 64), strings.Repeat("zz", 32)} {
		if _, err := ParseMasterKey(bad); err == nil {
			t.Errorf("ParseMasterKey(%q) accepted", bad)
		}
	}
	k := randKey(t)
	if s := (struct{ K AES128Key }{k}); strings.Contains(strings.ToLower(fmtAll(s)), strings.ToLower(k.Hex())) {
		t.Error("AES128Key formats its value")
	}
}

func fmtAll(v any) string {
	var b strings.Builder
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
		fmt.Fprintf(&b, f, v)
	}
	return b.String()
}
