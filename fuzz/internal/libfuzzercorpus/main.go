// Command libfuzzercorpus turns native Go fuzz corpus files ("go test fuzz
// v1", testdata/fuzz/<Target>/) into the inputs a libFuzzer binary built
// with go-118-fuzz-build expects, and zips them as OSS-Fuzz wants seed
// corpora: <fuzzer>_seed_corpus.zip.
//
// go-118-fuzz-build hands f.Fuzz its arguments through go-fuzz-headers
// (AdaLogics/go-fuzz-headers consumer.go, GetBytes, GetString, GetByte, at
// ced1acdcaa24, the version go-118-fuzz-build requires): a []byte or a
// string argument is a big-endian u32 length followed by that many bytes,
// a byte argument is one byte. Empty []byte and string values cannot be
// encoded (a zero length means 30), so files holding one are skipped.
//
// Usage: go run ./fuzz/internal/libfuzzercorpus -o out.zip dir
package main

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

func main() {
	out := flag.String("o", "", "zip file to write")
	rawDir := flag.String("raw", "", "also write the converted inputs into this directory")
	flag.Parse()
	if *out == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: libfuzzercorpus -o out.zip [-raw dir] corpusdir")
		os.Exit(2)
	}
	if err := run(*out, *rawDir, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "libfuzzercorpus:", err)
		os.Exit(1)
	}
}

func run(out, rawDir, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	zw := zip.NewWriter(f)
	n, skipped := 0, 0
	for _, name := range names {
		text, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		input, ok, err := convert(text)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if !ok {
			skipped++
			continue
		}
		w, err := zw.Create(name)
		if err != nil {
			return err
		}
		if _, err := w.Write(input); err != nil {
			return err
		}
		if rawDir != "" {
			if err := os.WriteFile(filepath.Join(rawDir, name), input, 0o644); err != nil {
				return err
			}
		}
		n++
	}
	if err := zw.Close(); err != nil {
		return err
	}
	fmt.Printf("%s: %d inputs (%d skipped: empty values)\n", out, n, skipped)
	return f.Close()
}

// convert encodes one corpus file; ok is false when a value is empty.
func convert(text []byte) ([]byte, bool, error) {
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	if !sc.Scan() || sc.Text() != "go test fuzz v1" {
		return nil, false, fmt.Errorf("not a go test fuzz v1 file")
	}
	var out []byte
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var lit string
		switch {
		case strings.HasPrefix(line, "[]byte(") && strings.HasSuffix(line, ")"):
			lit = line[len("[]byte(") : len(line)-1]
		case strings.HasPrefix(line, "string(") && strings.HasSuffix(line, ")"):
			lit = line[len("string(") : len(line)-1]
		case strings.HasPrefix(line, "byte(") && strings.HasSuffix(line, ")"):
			b, err := parseByte(line[len("byte(") : len(line)-1])
			if err != nil {
				return nil, false, fmt.Errorf("value %q: %w", line, err)
			}
			out = append(out, b)
			continue
		default:
			return nil, false, fmt.Errorf("unsupported value %q (only []byte, string and byte)", line)
		}
		v, err := strconv.Unquote(lit)
		if err != nil {
			return nil, false, fmt.Errorf("value %q: %w", line, err)
		}
		if v == "" {
			return nil, false, nil
		}
		out = binary.BigEndian.AppendUint32(out, uint32(len(v)))
		out = append(out, v...)
	}
	return out, true, sc.Err()
}

// parseByte reads a byte value as Go's fuzzing engine writes it, a
// character literal (byte('\x02'), byte('a'), byte('\u00ff')), or as a
// person may, an integer literal (byte(2), byte(0xff)): Go's
// src/internal/fuzz/encoding.go, parseCorpusValue, accepts both.
func parseByte(lit string) (byte, error) {
	if len(lit) >= 2 && lit[0] == '\'' && lit[len(lit)-1] == '\'' {
		code, _, tail, err := strconv.UnquoteChar(lit[1:len(lit)-1], '\'')
		if err != nil {
			return 0, err
		}
		if tail != "" {
			return 0, fmt.Errorf("more than one character in %s", lit)
		}
		if code > 0xff {
			return 0, fmt.Errorf("%s is not a byte", lit)
		}
		return byte(code), nil
	}
	n, err := strconv.ParseUint(lit, 0, 8)
	return byte(n), err
}
