// Ground-truth producer for shp's pgzip recipe tests and bench: klauspost/pgzip over klauspost/compress flate.
//
//	pgzip LEVEL BLOCKSIZE            compress stdin to stdout
//	pgzip LEVEL BLOCKSIZE time FILE  compress FILE from memory (3 runs, 2 threads); print the best time in ns
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/klauspost/pgzip"
)

func compress(w io.Writer, r io.Reader, level, block int) error {
	z, err := pgzip.NewWriterLevel(w, level)
	if err != nil {
		return err
	}
	if err := z.SetConcurrency(block, 2); err != nil {
		return err
	}
	if _, err := io.Copy(z, r); err != nil {
		return err
	}
	return z.Close()
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: pgzip LEVEL BLOCKSIZE [time FILE]")
		os.Exit(2)
	}
	level, err1 := strconv.Atoi(os.Args[1])
	block, err2 := strconv.Atoi(os.Args[2])
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "bad LEVEL or BLOCKSIZE")
		os.Exit(2)
	}
	if len(os.Args) == 5 && os.Args[3] == "time" {
		runtime.GOMAXPROCS(2)
		data, err := os.ReadFile(os.Args[4])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		var out bytes.Buffer
		best := time.Duration(1 << 62)
		for i := 0; i < 3; i++ {
			out.Reset()
			start := time.Now()
			if err := compress(&out, bytes.NewReader(data), level, block); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			if d := time.Since(start); d < best {
				best = d
			}
		}
		fmt.Println(best.Nanoseconds(), out.Len())
		return
	}
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	if err := compress(w, bufio.NewReaderSize(os.Stdin, 1<<20), level, block); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
