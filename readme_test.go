package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The README is what a newcomer has: these tests keep it true. Its links
// stay in the repository, its excerpts match their files, and its
// commands print what it shows.

func readme(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// fences returns the README's fenced blocks, each with the text before it.
func fences(doc string) (blocks []struct{ lang, body, before string }) {
	lines := strings.Split(doc, "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimLeft(lines[i], " ")
		if !strings.HasPrefix(l, "```") {
			continue
		}
		indent := len(lines[i]) - len(l)
		lang := strings.TrimPrefix(l, "```")
		var body []string
		j := i + 1
		for ; j < len(lines) && strings.TrimLeft(lines[j], " ") != "```"; j++ {
			body = append(body, strings.TrimPrefix(lines[j], strings.Repeat(" ", indent)))
		}
		start := max(0, i-6)
		blocks = append(blocks, struct{ lang, body, before string }{lang, strings.Join(body, "\n") + "\n", strings.Join(lines[start:i], "\n")})
		i = j
	}
	return blocks
}

// Every link is a web address or a file of this repository.
func TestReadmeLinksStayInTheRepository(t *testing.T) {
	links := regexp.MustCompile(`\]\(([^)]+)\)`).FindAllStringSubmatch(readme(t), -1)
	if len(links) == 0 {
		t.Fatal("no links found: the pattern is wrong")
	}
	for _, m := range links {
		target := m[1]
		if strings.HasPrefix(target, "https://") || strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "#") {
			continue
		}
		clean := filepath.Clean(strings.SplitN(target, "#", 2)[0])
		if strings.HasPrefix(clean, "..") || filepath.IsAbs(clean) {
			t.Errorf("link %q leaves the repository", target)
			continue
		}
		if _, err := os.Stat(clean); err != nil {
			t.Errorf("link %q: %v", target, err)
		}
	}
}

// The configuration shown is config.toml as shipped, and the fixture
// excerpt is scripts/chat_test.lua's own text.
func TestReadmeExcerptsMatchTheirFiles(t *testing.T) {
	var config, fixture string
	for _, b := range fences(readme(t)) {
		switch {
		case b.lang == "toml" && strings.Contains(b.before, "`config.toml`, as shipped"):
			config = b.body
		case b.lang == "lua" && strings.Contains(b.before, "From `scripts/chat_test.lua`"):
			fixture = b.body
		}
	}
	shipped, err := os.ReadFile("config.toml")
	if err != nil {
		t.Fatal(err)
	}
	if i := strings.Index(string(shipped), "[server]"); config == "" || i < 0 || config != string(shipped[i:]) {
		t.Errorf("the README's config.toml is not config.toml from [server] on:\n%s", config)
	}
	src, err := os.ReadFile("scripts/chat_test.lua")
	if err != nil {
		t.Fatal(err)
	}
	if fixture == "" {
		t.Fatal("no chat_test.lua excerpt found")
	}
	for _, part := range strings.Split(strings.TrimSpace(fixture), "\n\n") {
		if !strings.Contains(string(src), part) {
			t.Errorf("the excerpt's part is not in scripts/chat_test.lua:\n%s", part)
		}
	}
}

// Every Lua example of "Writing an integration" and "Patterns" is taken
// from a tested integration of scripts/patterns: its lines are lines of one of
// those files, in order.
func TestReadmeLuaExamplesAreTested(t *testing.T) {
	doc := readme(t)
	start, end := strings.Index(doc, "## Writing an integration"), strings.Index(doc, "## Testing integrations")
	if start < 0 || end < start {
		t.Fatal("sections not found")
	}
	files, err := filepath.Glob("scripts/patterns/*.lua")
	if err != nil || len(files) == 0 {
		t.Fatalf("scripts/patterns: %v", err)
	}
	n := 0
	for _, b := range fences(doc[start:end]) {
		if b.lang != "lua" {
			continue
		}
		n++
		found := false
		for _, f := range files {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if linesInOrder(string(src), b.body) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("this example is not in any scripts/patterns/*.lua:\n%s", b.body)
		}
	}
	if n < 5 {
		t.Errorf("%d Lua examples found, want at least 5", n)
	}
}

// linesInOrder reports whether every non-blank line of part is a line of
// src, in the same order.
func linesInOrder(src, part string) bool {
	lines := strings.Split(src, "\n")
	i := 0
	for _, want := range strings.Split(part, "\n") {
		if strings.TrimSpace(want) == "" {
			continue
		}
		for i < len(lines) && lines[i] != want {
			i++
		}
		if i == len(lines) {
			return false
		}
		i++
	}
	return true
}

// The README's `./electric-socket ...` commands print what it shows (the
// times in parentheses vary).
func TestReadmeCommandsPrintWhatItShows(t *testing.T) {
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	times := regexp.MustCompile(`\(\d+(\.\d+)?(ms|µs|s)\)`)
	var badToml string
	ran := 0
	for _, b := range fences(readme(t)) {
		if b.lang == "toml" && strings.Contains(b.before, "With this `bad.toml`") {
			badToml = b.body
		}
		if b.lang != "text" || !strings.HasPrefix(b.body, "$ ./electric-socket ") {
			continue
		}
		for _, run := range strings.Split(strings.TrimPrefix(b.body, "$ "), "\n$ ") {
			cmdLine, want, _ := strings.Cut(run, "\n")
			args := splitArgs(strings.TrimPrefix(cmdLine, "./electric-socket "))
			dir := root
			switch {
			case len(args) >= 3 && args[0] == "check" && args[2] == "bad.toml":
				// bad.toml beside the repository's scripts, as a newcomer writes it.
				dir = t.TempDir()
				writeFile(t, filepath.Join(dir, "bad.toml"), badToml)
				src, _ := os.ReadFile(filepath.Join(root, "scripts", "chat.lua"))
				writeFile(t, filepath.Join(dir, "scripts", "chat.lua"), string(src))
			case len(args) >= 2 && args[0] == "test" && args[1] == "--replay":
				// The two connections of tests/testdata/replay, recorded
				// through the chat, replayed through the chat with the edit
				// the README describes.
				dir = t.TempDir()
				copyDir(t, filepath.Join(root, "tests", "testdata", "replay"), dir)
				src, _ := os.ReadFile(filepath.Join(root, "scripts", "chat.lua"))
				edited := strings.Replace(string(src), "from = data.user,", "from = string.upper(data.user),", 1)
				if edited == string(src) {
					t.Fatal("scripts/chat.lua has no `from = data.user,` for the README's replay example")
				}
				writeFile(t, filepath.Join(dir, "scripts", "chat.lua"), edited)
				writeFile(t, filepath.Join(dir, "config.toml"), "[[integration]]\nname = \"chat\"\npath = \"/chat\"\nscript = \"scripts/chat.lua\"\n")
			case args[0] == "init":
				dir = filepath.Join(t.TempDir(), "electric-socket") // the clone; ../myproject beside it
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				want = strings.ReplaceAll(want, "/home/you/electric-socket/electric-socket", selfCommand())
			}
			t.Run(cmdLine, func(t *testing.T) {
				t.Chdir(dir)
				_, stdout, stderr := runCmd(t, args...)
				got := strings.TrimRight(times.ReplaceAllString(stdout+stderr, "()"), "\n")
				if want := strings.TrimRight(times.ReplaceAllString(want, "()"), "\n"); got != want {
					t.Errorf("%s prints:\n%s\nthe README shows:\n%s", cmdLine, got, want)
				}
			})
			ran++
		}
	}
	if ran < 5 {
		t.Errorf("%d README commands found, want at least 5", ran)
	}
}

// splitArgs splits a command line on spaces, keeping "double quoted" words.
func splitArgs(s string) []string {
	var args []string
	for _, m := range regexp.MustCompile(`"([^"]*)"|(\S+)`).FindAllStringSubmatch(s, -1) {
		if m[2] != "" {
			args = append(args, m[2])
		} else {
			args = append(args, m[1])
		}
	}
	return args
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyDir copies the files under src into dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		writeFile(t, filepath.Join(dst, rel), string(data))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
