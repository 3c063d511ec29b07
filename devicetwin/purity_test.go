package devicetwin_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// allowedImports is everything a non-test file under devicetwin/ may
// import: the standard library's pure packages, our codecs and the
// generated snapshot types. No os, net, io/fs, math/rand, crypto/rand,
// log, sync (locks mean shared state), runtime, syscall or unsafe.
var allowedImports = map[string]bool{
	"bufio": true, "bytes": true, "errors": true, "fmt": true, "io": true, "math": true,
	"reflect": true, "slices": true, "sort": true, "strconv": true, "strings": true, "time": true,
	"unicode/utf8": true, "encoding/binary": true, "encoding/hex": true, "encoding/json": true,
	"crypto/aes": true, "crypto/cipher": true, "crypto/subtle": true,
	// lorawan's per-session scratch block: an atomic flag, no goroutine.
	"sync/atomic":                                                true,
	"google.golang.org/protobuf/proto":                           true,
	"github.com/legionelladossier/legiond/devicetwin":            true,
	"github.com/legionelladossier/legiond/devicetwin/clipr":      true,
	"github.com/legionelladossier/legiond/devicetwin/lorawan":    true,
	"github.com/legionelladossier/legiond/proto/legiond/twin/v1": true,
	"github.com/legionelladossier/legiond/devicetwin/script":     true,
}

// clockFuncs read the clock or schedule on it.
var clockFuncs = map[string]bool{
	"Now": true, "Since": true, "Until": true, "Sleep": true, "After": true,
	"AfterFunc": true, "Tick": true, "NewTimer": true, "NewTicker": true,
}

// TestPurity holds the core to DESIGN §1/§7: no I/O, no goroutines, no
// clock, no mutable globals, in every non-test file of devicetwin/...
func TestPurity(t *testing.T) {
	fset := token.NewFileSet()
	byDir := map[string][]*ast.File{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "testdata" {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		byDir[filepath.Dir(path)] = append(byDir[filepath.Dir(path)], f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	for _, fs := range byDir {
		// Package-level variables of the package, across its files.
		globals := map[string]bool{}
		specs := map[any]bool{}
		for _, f := range fs {
			for _, d := range f.Decls {
				if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.VAR {
					for _, s := range g.Specs {
						specs[s] = true
						for _, n := range s.(*ast.ValueSpec).Names {
							globals[n.Name] = true
						}
					}
				}
			}
		}
		for _, f := range fs {
			files++
			checkFile(t, fset, f, func(id *ast.Ident) bool {
				if id.Obj == nil {
					return globals[id.Name]
				}
				return specs[id.Obj.Decl]
			})
		}
	}
	if files < 10 {
		t.Fatalf("checked only %d files", files)
	}
}

func checkFile(t *testing.T, fset *token.FileSet, f *ast.File, isGlobal func(*ast.Ident) bool) {
	t.Helper()
	timeName := ""
	for _, im := range f.Imports {
		p, _ := strconv.Unquote(im.Path.Value)
		if !allowedImports[p] {
			t.Errorf("%s: imports %q", fset.Position(im.Pos()), p)
		}
		if p == "time" {
			timeName = "time"
			if im.Name != nil {
				timeName = im.Name.Name
			}
		}
	}
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil && fd.Name.Name == "init" {
			t.Errorf("%s: func init", fset.Position(fd.Pos()))
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.GoStmt:
			t.Errorf("%s: go statement", fset.Position(n.Pos()))
		case *ast.SelectorExpr:
			if id, ok := n.X.(*ast.Ident); ok && id.Name == timeName && clockFuncs[n.Sel.Name] {
				t.Errorf("%s: time.%s reads the clock", fset.Position(n.Pos()), n.Sel.Name)
			}
		case *ast.AssignStmt:
			for _, l := range n.Lhs {
				if r := rootIdent(l); r != nil && isGlobal(r) {
					t.Errorf("%s: assigns package variable %s", fset.Position(n.Pos()), r.Name)
				}
			}
		case *ast.IncDecStmt:
			if r := rootIdent(n.X); r != nil && isGlobal(r) {
				t.Errorf("%s: modifies package variable %s", fset.Position(n.Pos()), r.Name)
			}
		}
		return true
	})
}

// rootIdent returns the variable an assignment target starts from (x in
// x, x.f, x[i], *x), or nil.
func rootIdent(e ast.Expr) *ast.Ident {
	for {
		switch v := e.(type) {
		case *ast.Ident:
			return v
		case *ast.SelectorExpr:
			e = v.X
		case *ast.IndexExpr:
			e = v.X
		case *ast.StarExpr:
			e = v.X
		case *ast.ParenExpr:
			e = v.X
		default:
			return nil
		}
	}
}
