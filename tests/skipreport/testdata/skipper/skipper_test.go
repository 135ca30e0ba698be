// A package for skipreport's own test: one test skipped for a missing
// component, one that passes.
package skipper

import (
	"testing"

	"github.com/electric-socket/electric-socket/tests/skipreport"
)

func TestMain(m *testing.M) { skipreport.Main(m) }

func TestNeedsAComponent(t *testing.T) {
	skipreport.Skip(t, "no such component here (install it)")
}

func TestPasses(t *testing.T) {}
