// Package docs holds the repository's prose documentation. Its test checks
// that every citation in the repository can be followed by a reader who has
// nothing but a clone of it (and the upstream projects it names).
package docs

import (
	"fmt"
	"go/scanner"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// root is the repository's root, seen from this package's directory.
const root = ".."

// selfName is this file: it spells out the forbidden patterns, so rule (a)
// skips it.
const selfName = "docs/citations_test.go"

// outsideCitations are the ways the repository once cited material that
// lives outside it: the shared reference notes, numbered sections of notes
// and facts files, the seed write-ups, and machine-local paths. A wrapped
// comment may split a citation over lines, so the separators allow comment
// markers.
var outsideCitations = []struct {
	what string
	re   *regexp.Regexp
}{
	{"a machine-local path", regexp.MustCompile(`/work/`)},
	{"the shared directory", regexp.MustCompile(`\.\./shared\b|\bshared/(reference|seeds)\b`)},
	{"a reference note outside the repository", regexp.MustCompile(`(?i)\b(vsock-facts|go-notes|real[- ]kernel[- ]notes|style-anchors|firecracker-vsock|bench-emu)\b|\breference (facts|notes)\b`)},
	{"a design document outside the repository", regexp.MustCompile(`(^|[^/\w])design\.md`)},
	{"a seed write-up outside the repository", regexp.MustCompile(`\bseeds/|\b\d{3}_[0-9a-f]{16}\.txt`)},
	{"a numbered section of notes", regexp.MustCompile(`(?i)\bnotes[\s/#*]*(§\s*|section[\s/#*]+)?\d`)},
	{"a numbered section of a facts file", regexp.MustCompile(`(?i)\bfacts[\s/#*]*(§|section[\s/#*]*\d|\d)`)},
	{"a numbered section sign", regexp.MustCompile(`§\s*\d`)},
}

// anchorRef is a reference to an anchor of a Markdown file in docs/, as
// code comments and trace headers write it; more anchors of the same file
// may follow, comma-separated: "docs/sources.md#fc-connect-line, #fc-ok-ack".
var anchorRef = regexp.MustCompile(`\b(docs/[\w.-]+\.md)#([\w-]+)((?:,[\s/]*#[\w-]+)*)`)

// moreAnchors picks the anchors out of anchorRef's continuation.
var moreAnchors = regexp.MustCompile(`#([\w-]+)`)

// mdLinkRef is a Markdown link with an anchor: to another file relative to
// the linking file, or within it.
var mdLinkRef = regexp.MustCompile(`\]\(([\w./-]*\.md)?#([\w-]+)\)`)

// anchorDef is an explicit anchor, `<a id="...">`.
var anchorDef = regexp.MustCompile(`<a id="([\w-]+)">`)

// heading is a Markdown ATX heading; GitHub gives it an anchor too.
var heading = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*$`)

// citation is one place that cites something.
type citation struct {
	file string // repository-relative, slash-separated
	line int
	text string
}

func (c citation) String() string { return fmt.Sprintf("%s:%d: %s", c.file, c.line, c.text) }

// repoFile is one file the rules read.
type repoFile struct {
	path string // repository-relative, slash-separated
	text string
}

// readRepo returns every *.go, *.md and *.trace file of the repository,
// skipping hidden directories (.git, CI configuration).
func readRepo(t *testing.T) []repoFile {
	t.Helper()
	var files []repoFile
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".go", ".md", ".trace":
		default:
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		files = append(files, repoFile{path: filepath.ToSlash(rel), text: string(b)})
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, files)
	return files
}

// lineOf is the 1-based line of byte offset off in text.
func lineOf(text string, off int) int { return strings.Count(text[:off], "\n") + 1 }

// TestNoCitationsOutsideRepository is rule (a): nothing in the repository
// cites notes, facts sections, seed files or paths that only exist on the
// machine it was written on. Cite upstream or docs/sources.md instead.
func TestNoCitationsOutsideRepository(t *testing.T) {
	var bad []citation
	for _, f := range readRepo(t) {
		if f.path == selfName {
			continue
		}
		for _, p := range outsideCitations {
			for _, m := range p.re.FindAllStringIndex(f.text, -1) {
				snippet := strings.Join(strings.Fields(f.text[m[0]:m[1]]), " ")
				bad = append(bad, citation{f.path, lineOf(f.text, m[0]), fmt.Sprintf("%s (%q)", p.what, snippet)})
			}
		}
	}
	require.Zero(t, len(bad), "citations of material outside the repository (cite upstream, or docs/sources.md#<anchor>):\n%s", joinCitations(bad))
}

// TestOutsideCitationPatterns pins what rule (a) flags and what it leaves
// alone, so that a loosened pattern cannot pass the repository vacuously.
func TestOutsideCitationPatterns(t *testing.T) {
	flagged := func(text string) bool {
		for _, p := range outsideCitations {
			if p.re.MatchString(text) {
				return true
			}
		}
		return false
	}
	for _, tc := range []struct {
		text string
		want bool
	}{
		{"(FC@v1.14.0 unix/muxer.rs send_pkt; notes " + "4.4)", true}, // split so the repo's own grep for such citations passes over it
		{"notes 7", true},
		{"(notes\n// 4.6)", true},
		{"Linux notes section 9: receive buffers", true},
		{"Linux notes\n// section 1: 4096", true},
		{"(notes\n// §1.2, Firecracker issue #4284)", true},
		{"facts " + "§5: device buf_alloc 64 KiB", true},
		{"Facts section 3: connect, RST", true},
		{"(facts\n\t// section 4): header", true},
		{"§3 \"THE LEAK\"", true},
		{"# (../" + "shared/seeds/003_8d371f8b1d3b87cb.txt).", true},
		{"see /work/notes/bench-emu.md", true},
		{"the timer-pool hazard of go-notes.md", true},
		{"byte for byte (design.md \"Determinism contract\")", true},
		{"facts 5: ports", true},
		{"as summarised in the project's reference facts", true},
		{"the real kernel notes say", true},
		{"docs/sources.md#fc-port-allocation", false},
		{"the facts of the case", false},
		{"the programs' log lines as notes, as a Mermaid diagram", false},
		{"release notes for v1.15.0", false},
		{"the seeds in the code; run with -update-corpus", false},
		{"testdata/fuzz/FuzzCredit/seed-03", false},
		{"Firecracker v1.15.0 (PR #5688) persists local_port_last", false},
	} {
		require.Equal(t, tc.want, flagged(tc.text), "%q", tc.text)
	}
}

// anchorsOf returns the anchors a Markdown text defines: explicit
// <a id="..."> anchors and GitHub's heading anchors.
func anchorsOf(text string) map[string]bool {
	anchors := map[string]bool{}
	for _, m := range anchorDef.FindAllStringSubmatch(text, -1) {
		anchors[m[1]] = true
	}
	for _, m := range heading.FindAllStringSubmatch(text, -1) {
		anchors[headingSlug(m[1])] = true
	}
	return anchors
}

// headingSlug is GitHub's anchor for a heading: lower case, punctuation
// other than '-' and '_' dropped, spaces turned into '-'.
func headingSlug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		case r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestAnchorsResolve is rule (b): every docs/<file>.md#anchor reference in
// code, docs and traces, and every Markdown link with an anchor, names an
// anchor its target file defines.
func TestAnchorsResolve(t *testing.T) {
	files := readRepo(t)
	byPath := map[string]string{}
	for _, f := range files {
		byPath[f.path] = f.text
	}
	anchors := map[string]map[string]bool{}
	defined := func(target string) (map[string]bool, bool) {
		if a, ok := anchors[target]; ok {
			return a, true
		}
		text, ok := byPath[target]
		if !ok {
			return nil, false
		}
		anchors[target] = anchorsOf(text)
		return anchors[target], true
	}
	var bad []citation
	check := func(f repoFile, off int, target, anchor string) {
		a, ok := defined(target)
		switch {
		case !ok:
			bad = append(bad, citation{f.path, lineOf(f.text, off), fmt.Sprintf("%s#%s: no such file in the repository", target, anchor)})
		case !a[anchor]:
			bad = append(bad, citation{f.path, lineOf(f.text, off), fmt.Sprintf("%s#%s: %s defines no such anchor", target, anchor, target)})
		}
	}
	refs := 0
	for _, f := range files {
		for _, m := range anchorRef.FindAllStringSubmatchIndex(f.text, -1) {
			target := f.text[m[2]:m[3]]
			check(f, m[0], target, f.text[m[4]:m[5]])
			for _, more := range moreAnchors.FindAllStringSubmatch(f.text[m[6]:m[7]], -1) {
				check(f, m[0], target, more[1])
			}
			refs++
		}
		if !strings.HasSuffix(f.path, ".md") {
			continue
		}
		for _, m := range mdLinkRef.FindAllStringSubmatchIndex(f.text, -1) {
			target := f.path
			if m[2] >= 0 {
				target = pathJoin(pathDir(f.path), f.text[m[2]:m[3]])
			}
			check(f, m[0], target, f.text[m[4]:m[5]])
			refs++
		}
	}
	require.Zero(t, len(bad), "anchor references that do not resolve:\n%s", joinCitations(bad))
	require.NotZero(t, refs, "no anchor references found: the pattern no longer matches how the repository cites docs/sources.md")
}

// TestAnchorRefForms pins the citation forms rule (b) reads, so that a
// continuation anchor cannot slip past unchecked.
func TestAnchorRefForms(t *testing.T) {
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"(docs/sources.md#fc-port-allocation).", []string{"fc-port-allocation"}},
		{"docs/sources.md#fc-connect-line, #fc-ok-ack)", []string{"fc-connect-line", "fc-ok-ack"}},
		{"docs/sources.md#fc-reset-event,\n// #fc-reset-on-snapshot).", []string{"fc-reset-event", "fc-reset-on-snapshot"}},
		{"see docs/trace.md#scenarios and #later", []string{"scenarios"}},
	} {
		var got []string
		for _, m := range anchorRef.FindAllStringSubmatch(tc.text, -1) {
			got = append(got, m[2])
			for _, more := range moreAnchors.FindAllStringSubmatch(m[3], -1) {
				got = append(got, more[1])
			}
		}
		require.Equal(t, tc.want, got, "%q", tc.text)
	}
}

// TestAnchorsUnique: an anchor defined twice in one document makes a
// citation ambiguous.
func TestAnchorsUnique(t *testing.T) {
	b, err := os.ReadFile("sources.md")
	require.NoError(t, err)
	seen := map[string]int{}
	for _, m := range anchorDef.FindAllStringSubmatch(string(b), -1) {
		seen[m[1]]++
	}
	var dup []string
	for a, n := range seen {
		if n > 1 {
			dup = append(dup, a)
		}
	}
	slices.Sort(dup)
	require.Empty(t, dup, "anchors defined more than once in docs/sources.md")
	require.Greater(t, len(seen), 40, "docs/sources.md lost its anchors")
}

// pathDir and pathJoin work on slash-separated repository paths.
func pathDir(p string) string {
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[:i]
	}
	return ""
}

func pathJoin(dir, rel string) string {
	return filepath.ToSlash(filepath.Clean(filepath.Join(filepath.FromSlash(dir), filepath.FromSlash(rel))))
}

// commentText returns the text a file's reader takes as prose: a Go file's
// comments, a trace file's '#' lines, a Markdown file whole. Each piece
// keeps its offset so that findings carry the right line.
func commentText(t *testing.T, f repoFile) []citation {
	switch filepath.Ext(f.path) {
	case ".md":
		return []citation{{f.path, 1, f.text}}
	case ".trace":
		var out []citation
		for i, line := range strings.Split(f.text, "\n") {
			if strings.HasPrefix(line, "#") {
				out = append(out, citation{f.path, i + 1, line})
			}
		}
		return out
	}
	fset := token.NewFileSet()
	file := fset.AddFile(f.path, -1, len(f.text))
	var s scanner.Scanner
	s.Init(file, []byte(f.text), func(pos token.Position, msg string) { t.Errorf("%s: %s", pos, msg) }, scanner.ScanComments)
	// Line comments on consecutive lines are one piece of prose: a citation
	// may wrap, a project's name ending one line and its path starting the
	// next.
	var out []citation
	lastLine := -1
	for {
		pos, tok, lit := s.Scan()
		if tok == token.EOF {
			return out
		}
		if tok != token.COMMENT {
			continue
		}
		line := fset.Position(pos).Line
		if n := len(out); n > 0 && line == lastLine+1 {
			out[n-1].text += "\n" + lit
		} else {
			out = append(out, citation{f.path, line, lit})
		}
		lastLine = line + strings.Count(lit, "\n")
	}
}

// upstreamPrefix ends with an upstream project's name, possibly
// possessive, right before a path: the path is that project's.
var upstreamPrefix = regexp.MustCompile("(?i)\\b(QEMU|Firecracker|Linux|Cloud Hypervisor|CH|FC|rust-vmm|vhost-device|vm-virtio|yamux|Go|libkrun)('s)?[\\s/#]+`?$")

// repoPathRef is a path under one of the repository's top-level entries,
// standing on its own (not the tail of an upstream or import path).
func repoPathRef(tops []string) *regexp.Regexp {
	quoted := make([]string, len(tops))
	for i, top := range tops {
		quoted[i] = regexp.QuoteMeta(top)
	}
	return regexp.MustCompile("(?:^|[\\s(\\[\"'`])((?:" + strings.Join(quoted, "|") + ")/[\\w.*/-]*)")
}

// TestRepoPathsExist is rule (c): a repository path cited in prose (a Go
// comment, a trace header, a Markdown document) exists, from the
// repository's root or from the citing file's directory (a package's README
// names its own testdata/); a pattern with '*' matches at least one file. A
// token followed by ':' and a space is a commit subject's prefix
// ("virtio/vsock: ..."), one followed by '<' a template
// ("testdata/fuzz/<Target>/", Go's layout for any package), and one right
// after an upstream project's name ("QEMU's docs/interop/vhost-user.rst",
// "Go's src/internal/fuzz") is that project's file: none of them names a
// path of this repository.
func TestRepoPathsExist(t *testing.T) {
	entries, err := os.ReadDir(root)
	require.NoError(t, err)
	var tops []string
	for _, e := range entries {
		if e.IsDir() && e.Name() != ".git" {
			tops = append(tops, e.Name())
		}
	}
	require.Contains(t, tops, "docs")
	ref := repoPathRef(tops)
	var bad []citation
	checked := 0
	for _, f := range readRepo(t) {
		for _, c := range commentText(t, f) {
			for _, r := range repoPathsIn(ref, c.text) {
				checked++
				if !pathExists(r.path) && !pathExists(pathJoin(pathDir(f.path), r.path)) {
					bad = append(bad, citation{f.path, c.line + lineOf(c.text, r.off) - 1, fmt.Sprintf("%s: no such path in the repository", r.path)})
				}
			}
		}
	}
	require.Zero(t, len(bad), "repository paths cited in comments and docs that do not exist:\n%s", joinCitations(bad))
	require.NotZero(t, checked, "no repository paths found in comments: the pattern no longer matches")
}

// pathRef is a repository path found in prose, at byte offset off.
type pathRef struct {
	path string
	off  int
}

// repoPathsIn returns the repository paths text cites, by the rules of
// TestRepoPathsExist.
func repoPathsIn(ref *regexp.Regexp, text string) []pathRef {
	var out []pathRef
	for _, m := range ref.FindAllStringSubmatchIndex(text, -1) {
		if rest := text[m[3]:]; strings.HasPrefix(rest, ": ") || strings.HasPrefix(rest, "<") || upstreamPrefix.MatchString(text[:m[2]]) {
			continue
		}
		out = append(out, pathRef{strings.TrimRight(text[m[2]:m[3]], "."), m[2]})
	}
	return out
}

// TestRepoPathRefForms pins which tokens rule (c) reads as this
// repository's paths.
func TestRepoPathRefForms(t *testing.T) {
	ref := repoPathRef([]string{"docs", "emu", "virtio", "internal", "testdata"})
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"// see docs/trace.md.", []string{"docs/trace.md"}},
		{"(emu/device/profile.go, emu/guest)", []string{"emu/device/profile.go", "emu/guest"}},
		{"replay testdata/incidents/*.trace", []string{"testdata/incidents/*.trace"}},
		{"paths under src/vmm/src/devices/virtio/vsock/", nil},
		{"github.com/vsocklab/vsocklab/emu/lab", nil},
		{"(\"virtio/vsock: fix logic which reduces credit update messages\")", nil},
		{"corpus files (testdata/fuzz/<Target>/)", nil},
		{"following QEMU's\n// docs/interop/vhost-user.rst (v7.2.0)", nil},
		{"Firecracker's `docs/vsock.md`", nil},
		{"(Go's src/internal/fuzz/minimize.go)", nil},
		{"(internal/fuzz/minimize.go)", []string{"internal/fuzz/minimize.go"}},
	} {
		var got []string
		for _, r := range repoPathsIn(ref, tc.text) {
			got = append(got, r.path)
		}
		require.Equal(t, tc.want, got, "%q", tc.text)
	}
}

// pathExists reports whether a repository path, or a glob pattern over
// them, names at least one file or directory.
func pathExists(p string) bool {
	matches, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(p)))
	return err == nil && len(matches) > 0
}

func joinCitations(cs []citation) string {
	lines := make([]string, len(cs))
	for i, c := range cs {
		lines[i] = "  " + c.String()
	}
	return strings.Join(lines, "\n")
}
