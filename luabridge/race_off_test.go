//go:build !race

package luabridge

// raceSlowdown: 1 without the race detector (race_on_test.go).
const raceSlowdown = 1
