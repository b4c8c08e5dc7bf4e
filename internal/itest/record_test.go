package itest

import (
	"testing"
	"time"
)

func TestRecordWakesWaiterAtEachAdd(t *testing.T) {
	var r Record[int]
	go func() {
		for i := range 100 {
			r.Add(i)
		}
	}()
	got := r.WaitFor(t, "a hundred items", 10*time.Second, func(xs []int) bool { return len(xs) == 100 })
	for i, x := range got {
		if x != i {
			t.Fatalf("item %d = %d: not in arrival order", i, x)
		}
	}
	if r.Len() != 100 || len(r.All()) != 100 {
		t.Errorf("Len %d, All %d", r.Len(), len(r.All()))
	}
}
