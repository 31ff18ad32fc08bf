package fsmap

import (
	"reflect"
	"testing"
)

func TestNormalize(t *testing.T) {
	got := Normalize([]Extent{{100, 10}, {0, 10}, {5, 10}, {15, 5}, {200, 0}, {250, 100}}, 300)
	want := []Extent{{0, 20}, {100, 10}, {250, 50}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Normalize = %v, want %v", got, want)
	}
}

func TestBitmapExtents(t *testing.T) {
	// bits: 0,1 set; 8..23 set; 30 set
	bm := []byte{0x03, 0xff, 0xff, 0x40}
	got := BitmapExtents(bm, 32, 0, 4096, 1024)
	want := []Extent{{1024, 2 * 4096}, {1024 + 8*4096, 16 * 4096}, {1024 + 30*4096, 4096}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("BitmapExtents = %v, want %v", got, want)
	}
	if got := BitmapExtents(bm, 4, 10, 1, 0); !reflect.DeepEqual(got, []Extent{{10, 2}}) {
		t.Fatalf("limited = %v", got)
	}
}
