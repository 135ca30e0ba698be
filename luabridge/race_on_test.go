//go:build race

package luabridge

// raceSlowdown: the race detector makes the Go built-ins a script calls
// several times slower (a doubled table's capped encoding: 0.6 s, 6.8 s
// under -race); hang guards scale by it.
const raceSlowdown = 6
