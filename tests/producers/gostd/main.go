// gostd: ground-truth producer for shp's goflate recipes, using Go's standard compress/gzip.
//
//	gostd LEVEL < in > out.gz          compress stdin at LEVEL (-2..9) in one Write, like io.Copy would
//	gostd -chunk N LEVEL < in > out.gz compress with Writes of N bytes each
//	gostd -time LEVEL FILE ITERS       load FILE into memory, compress it ITERS times to io.Discard and
//	                                   print the total wall time of those compressions in nanoseconds
package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "gostd: "+format+"\n", args...)
	os.Exit(2)
}

func level(s string) int {
	l, err := strconv.Atoi(s)
	if err != nil || l < -2 || l > 9 {
		fail("bad level %q", s)
	}
	return l
}

func compress(dst io.Writer, src []byte, lvl, chunk int) {
	zw, err := gzip.NewWriterLevel(dst, lvl)
	if err != nil {
		fail("%v", err)
	}
	if chunk <= 0 {
		chunk = len(src)
	}
	for off := 0; off < len(src); off += chunk {
		end := off + chunk
		if end > len(src) {
			end = len(src)
		}
		if _, err := zw.Write(src[off:end]); err != nil {
			fail("%v", err)
		}
	}
	if err := zw.Close(); err != nil {
		fail("%v", err)
	}
}

func main() {
	args := os.Args[1:]
	if len(args) == 4 && args[0] == "-time" {
		lvl := level(args[1])
		data, err := os.ReadFile(args[2])
		if err != nil {
			fail("%v", err)
		}
		iters, err := strconv.Atoi(args[3])
		if err != nil || iters < 1 {
			fail("bad iteration count %q", args[3])
		}
		start := time.Now()
		for i := 0; i < iters; i++ {
			compress(io.Discard, data, lvl, 0)
		}
		fmt.Println(time.Since(start).Nanoseconds())
		return
	}
	chunk := 0
	if len(args) == 3 && args[0] == "-chunk" {
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 1 {
			fail("bad chunk size %q", args[1])
		}
		chunk = n
		args = args[2:]
	}
	if len(args) != 1 {
		fail("usage: gostd [-chunk N] LEVEL < in > out.gz | gostd -time LEVEL FILE ITERS")
	}
	lvl := level(args[0])
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("%v", err)
	}
	var out bytes.Buffer
	compress(&out, data, lvl, chunk)
	if _, err := os.Stdout.Write(out.Bytes()); err != nil {
		fail("%v", err)
	}
}
