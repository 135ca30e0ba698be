package main

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/electric-socket/electric-socket/host/config"
)

// config.toml says "Every key is shown with its default unless a comment
// says otherwise": loaded, it is the zero-config defaults (config.Default)
// but for what its comments name: the chat integration and the [web] root
// (`default "" = none`). The keys it leaves commented out are those whose
// default is not a constant (max_memory) or that have none (sink url,
// headers).
func TestShippedConfigIsTheDefaults(t *testing.T) {
	cfg, err := config.Load("config.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Server.AllowedOrigins) == 0 {
		cfg.Server.AllowedOrigins = nil // allowed_origins = [] is the default: any origin
	}
	want := config.Default()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	want.Path = filepath.Join(wd, "config.toml")
	want.Web.Root = filepath.Join(wd, "scripts", "web")
	want.Integrations = []config.IntegrationConfig{{Name: "chat", Path: "/chat", Script: filepath.Join(wd, "scripts", "chat.lua")}}
	if len(cfg.Integrations) == 1 {
		want.Integrations[0].Line = cfg.Integrations[0].Line
	}
	for _, part := range []struct {
		name      string
		got, want any
	}{
		{"[server]", cfg.Server, want.Server}, {"[lua]", cfg.Lua, want.Lua}, {"[limits]", cfg.Limits, want.Limits},
		{"[broker]", cfg.Broker, want.Broker}, {"[sink]", cfg.Sink, want.Sink}, {"[log]", cfg.Log, want.Log},
		{"[admin]", cfg.Admin, want.Admin}, {"[web]", cfg.Web, want.Web},
		{"[[integration]]", cfg.Integrations, want.Integrations}, {"path", cfg.Path, want.Path},
	} {
		if !reflect.DeepEqual(part.got, part.want) {
			t.Errorf("config.toml %s =\n%+v\nthe defaults are\n%+v", part.name, part.got, part.want)
		}
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("config.toml differs from the defaults beyond the parts above")
	}

	data, err := os.ReadFile("config.toml")
	if err != nil {
		t.Fatal(err)
	}
	var commented []string
	for _, m := range regexp.MustCompile(`(?m)^# ([a-z_]+) = `).FindAllStringSubmatch(string(data), -1) {
		commented = append(commented, m[1])
	}
	if got := strings.Join(commented, ","); got != "max_memory,url,headers" {
		t.Errorf("config.toml leaves %q commented out, want max_memory,url,headers (a key without a constant default)", got)
	}
}
