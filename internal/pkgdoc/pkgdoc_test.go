// Package pkgdoc checks that every Go package in the repository has a
// package doc comment, so a reader always finds out what a directory owns.
package pkgdoc

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEveryPackageHasADoc(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "gen" || name == "node_modules" || name == "data" || name == "bin") {
			return filepath.SkipDir
		}
		entries, err := os.ReadDir(path)
		if err != nil {
			return err
		}
		// package name -> whether some non-test file documents it
		pkgs := map[string]bool{}
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(path, e.Name()), nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				return err
			}
			pkgs[f.Name.Name] = pkgs[f.Name.Name] || (f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "")
		}
		for p, documented := range pkgs {
			checked++
			if !documented {
				rel, _ := filepath.Rel(root, path)
				t.Errorf("package %s in %s has no package doc comment (add a doc.go)", p, rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 10 {
		t.Fatalf("checked only %d packages: is the walk rooted at the repository?", checked)
	}
}
