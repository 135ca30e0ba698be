package skipreport

import (
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// A plain `go test` of a package list, with no -v, shows the skip: the case
// where the go command hides a passing package's output.
func TestSkipsShowWithoutVerbose(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Only the skipper: never this package, which would run this test again.
	cmd := exec.CommandContext(ctx, goTool, "test", "-count=1", "./testdata/skipper")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go test: %v\n%s", err, out)
	}
	want := "SKIPPED tests/skipreport/testdata/skipper TestNeedsAComponent: no such component here (install it)\n"
	if strings.Count(string(out), want) != 1 {
		t.Fatalf("go test's output does not hold %q once:\n%s", want, out)
	}
	if strings.Contains(string(out), "TestPasses") {
		t.Errorf("a test that ran is reported:\n%s", out)
	}
}
