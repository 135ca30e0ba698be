// Package skipreport makes the tests skipped for a missing real component
// (Chromium, Node's packages, lua5.1, redis-server) visible in a plain
// `go test ./...`. The go command shows the output of a package that
// passes only with -v, so a skipped test would otherwise hide behind a
// bare "ok". Skip records the skip; Main, called by the package's
// TestMain, prints one line per skipped test once the tests have run.
//
// The lines go to the go command's own standard error when the test binary
// can open it (Linux: /proc/<parent>/fd/2, when the parent is the go
// command), which the go command does not buffer; elsewhere to the test
// binary's standard error, which go test shows with -v or for a failing
// package.
package skipreport

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	mu      sync.Mutex
	skipped []string // "TestName: why"
)

// Skip records that t is skipped because a real component is missing, and
// skips it with why.
func Skip(t testing.TB, why string) {
	t.Helper()
	mu.Lock()
	skipped = append(skipped, t.Name()+": "+why)
	mu.Unlock()
	t.Skip(why)
}

// Main runs the tests, then each of after (clean-ups), prints a line for
// each test Skip skipped, and exits with the tests' code. Call it from
// TestMain.
func Main(m *testing.M, after ...func()) {
	code := m.Run()
	for _, f := range after {
		f()
	}
	mu.Lock()
	lines := skipped
	mu.Unlock()
	if len(lines) > 0 {
		w, closeW := output()
		report(w, packageName(), lines)
		closeW()
	}
	os.Exit(code)
}

// report writes one line per skipped test of pkg.
func report(w io.Writer, pkg string, lines []string) {
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "SKIPPED %s %s\n", pkg, l)
	}
	io.WriteString(w, b.String())
}

// output is the go command's standard error when this binary can open it,
// else its own.
func output() (io.Writer, func()) {
	ppid := os.Getppid()
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", ppid))
	if err == nil && strings.TrimSpace(string(comm)) == "go" {
		if f, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/2", ppid), os.O_WRONLY|os.O_APPEND, 0); err == nil {
			return f, func() { f.Close() }
		}
	}
	return os.Stderr, func() {}
}

// packageName is the folder the tests run in (go test runs them in the
// package's folder), relative to the module's root: "tests", "broker".
func packageName() string {
	wd, err := os.Getwd()
	if err != nil {
		return "?"
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if rel, err := filepath.Rel(dir, wd); err == nil {
				return filepath.ToSlash(rel)
			}
			break
		}
		if filepath.Dir(dir) == dir {
			break
		}
	}
	return filepath.Base(wd)
}
