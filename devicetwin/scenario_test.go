package devicetwin_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/legionelladossier/legiond/devicetwin/script"
)

// TestScenarios plays every script under testdata/scenarios. Each input is
// also applied a second time to a copy of the twins, which must emit
// nothing and leave the state unchanged.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "scenarios", "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 30 {
		t.Errorf("%d scenarios, want at least 30", len(files))
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".jsonl"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			sc, err := script.ParseScenario(data)
			if err != nil {
				t.Fatal(err)
			}
			fails, err := sc.Run(true)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range fails {
				t.Error(f)
			}
		})
	}
}
