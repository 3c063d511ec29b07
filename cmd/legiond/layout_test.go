package main

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/legionelladossier/legiond"

// allowedImports is DESIGN §2's dependency table: which of our own top-level
// areas each area may import (besides itself). cmd may import everything.
var allowedImports = map[string][]string{
	"proto":              {},
	"devicetwin":         {"proto"},
	"actors":             {"devicetwin", "storage", "proto"},
	"cluster":            {"actors", "storage", "devicetwin", "proto", "api/tlsconf"},
	"streams":            {"devicetwin", "proto"},
	"storage":            {"devicetwin", "proto"},
	"api":                {"storage", "streams", "proto"},
	"loadtest":           {"proto", "devicetwin/lorawan", "devicetwin/clipr"},
	"devicetwin/lorawan": {},
	"devicetwin/clipr":   {},
	// api/tlsconf is a stdlib-only leaf (TLS 1.3 settings, development CA)
	// that the cluster's mutual TLS shares with the API listeners.
	"api/tlsconf": {},
}

// area maps a package path (relative to the module) to its row in
// allowedImports: the codecs are rows of their own because loadtest may use
// them without the rest of the core.
func area(rel string) string {
	for _, codec := range []string{"devicetwin/lorawan", "devicetwin/clipr", "api/tlsconf"} {
		if rel == codec || strings.HasPrefix(rel, codec+"/") {
			return codec
		}
	}
	top, _, _ := strings.Cut(rel, "/")
	return top
}

func allowed(from, to string) bool {
	if from == to || from == "cmd" {
		return true
	}
	// The rest of devicetwin may use its own codecs, the rest of api its
	// TLS package.
	if from == "devicetwin" && (to == "devicetwin/lorawan" || to == "devicetwin/clipr") {
		return true
	}
	if from == "api" && to == "api/tlsconf" {
		return true
	}
	for _, a := range allowedImports[from] {
		if a == to || (a == "devicetwin" && strings.HasPrefix(to, "devicetwin")) {
			return true
		}
	}
	return false
}

// TestLayoutDependencyDirection fails when a package imports one of ours
// that DESIGN §2 does not allow, so the pure core stays pure and siblings
// stay independent.
func TestLayoutDependencyDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, module+"/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		from := area(strings.TrimPrefix(strings.TrimPrefix(fields[0], module), "/"))
		checked++
		for _, imp := range fields[1:] {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			to := area(strings.TrimPrefix(imp, module+"/"))
			if !allowed(from, to) {
				t.Errorf("%s imports %s: %s may not depend on %s (DESIGN §2)", fields[0], imp, from, to)
			}
		}
	}
	if checked < 5 {
		t.Fatalf("checked only %d packages; go list output looks wrong:\n%s", checked, out)
	}
}

func TestLayoutRulesCatchViolations(t *testing.T) {
	tests := []struct {
		from, to string
		ok       bool
	}{
		{"devicetwin", "storage", false},
		{"devicetwin", "devicetwin/clipr", true},
		{"proto", "devicetwin", false},
		{"loadtest", "devicetwin/lorawan", true},
		{"loadtest", "devicetwin", false},
		{"loadtest", "streams", false},
		{"streams", "actors", false},
		{"api", "storage", true},
		{"actors", "devicetwin/clipr", true},
		{"cmd", "cluster", true},
		{"cluster", "api/tlsconf", true},
		{"cluster", "api", false},
		{"api", "api/tlsconf", true},
		{"api/tlsconf", "api", false},
	}
	for _, tt := range tests {
		if got := allowed(tt.from, tt.to); got != tt.ok {
			t.Errorf("allowed(%s, %s) = %v, want %v", tt.from, tt.to, got, tt.ok)
		}
	}
}
