// Package config reads, checks and holds electric-socket's TOML
// configuration: its types and defaults, Load, the file:line of every key,
// and the validation that reports every problem at once.
package config
