package shp

// This file holds the Go function C calls back; cgo allows no C definitions beside an //export.

/*
#include <stdint.h>
*/
import "C"

import "runtime/cgo"

// shpGoDigest receives one digest from shp_blob_list; ctx is the cgo.Handle of a
// func(string) bool that returns false to stop.
//
//export shpGoDigest
func shpGoDigest(digest *C.char, ctx C.uintptr_t) C.int {
	f := cgo.Handle(ctx).Value().(func(string) bool)
	if f(C.GoString(digest)) {
		return 0
	}
	return 1
}
