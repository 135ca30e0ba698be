//go:build !race

package testkit

// Race says whether the tests were built with -race; the binary is then
// built with it too.
const Race = false
