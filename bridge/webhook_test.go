package bridge

import (
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/smartcar2mqtt/smartcar2mqtt/internal/itest"
	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

func TestPollDue(t *testing.T) {
	from := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	h := time.Hour
	for _, tt := range []struct {
		name         string
		poll         time.Duration
		lastDelivery time.Time
		want         time.Time
	}{
		{"no delivery yet: the poll interval", 6 * h, time.Time{}, from.Add(6 * h)},
		{"deliveries flowing: a day after the read", 6 * h, from.Add(h), from.Add(24 * h)},
		{"a delivery just before the read: a day after it", 6 * h, from.Add(-h), from.Add(23 * h)},
		{"the last delivery 20 h before: a day after it, the interval at the earliest", 6 * h, from.Add(-20 * h), from.Add(6 * h)},
		{"the last delivery 15 h before: a day after it", 6 * h, from.Add(-15 * h), from.Add(9 * h)},
		{"stopped over a day ago: the poll interval", 6 * h, from.Add(-30 * h), from.Add(6 * h)},
		{"a poll slower than daily stays as slow", 48 * h, from.Add(h), from.Add(48 * h)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := pollDue(from, tt.poll, tt.lastDelivery); !got.Equal(tt.want) {
				t.Errorf("pollDue = %s, want %s", got.Sub(from), tt.want.Sub(from))
			}
		})
	}
}

func TestRecentEventsForgetsTheOldestFirst(t *testing.T) {
	var r recentEvents
	for i := range recentEventsKept {
		if !r.add(fmt.Sprint(i)) {
			t.Fatalf("event %d taken as a repeat", i)
		}
	}
	if r.add("0") || r.add(fmt.Sprint(recentEventsKept-1)) {
		t.Fatal("a kept event taken as new")
	}
	r.add("new") // forgets "0"
	if !r.add("0") {
		t.Error("the oldest event is still remembered past the bound")
	}
	if r.add("new") || r.add(fmt.Sprint(recentEventsKept-1)) {
		t.Error("recent events forgotten")
	}
	if len(r.set) != recentEventsKept || len(r.ids) != recentEventsKept {
		t.Errorf("keeps %d ids (%d in the set), want %d", len(r.ids), len(r.set), recentEventsKept)
	}
}

func TestMailboxTakesDeliveriesBeforeACommand(t *testing.T) {
	m := newMailbox()
	m.requestRead()
	m.putCommand(smartcar.Open)
	for i := range 3 {
		m.putDelivery(Delivery{Event: smartcar.WebhookEvent{ID: fmt.Sprint(i)}})
	}
	if j, _ := m.take(); j != jobDeliveries {
		t.Fatalf("first job %v, want the deliveries", j)
	}
	ds := m.takeDeliveries()
	if len(ds) != 3 || ds[0].Event.ID != "0" || ds[2].Event.ID != "2" {
		t.Fatalf("deliveries %+v, want the three in order", ds)
	}
	if j, a := m.take(); j != jobCommand || a != smartcar.Open {
		t.Fatalf("then %v %v, want the command", j, a)
	}
	for range maxPendingDeliveries {
		if !m.putDelivery(Delivery{}) {
			t.Fatal("a delivery refused below the bound")
		}
	}
	if m.putDelivery(Delivery{}) {
		t.Error("a delivery taken beyond the bound")
	}
}

// dayOfPolls drives one worker's real schedule (scheduleAfter after each
// read, deliveriesFlow after each delivery) on a fake clock for days, with
// a delivery every deliveryEvery (± half of it) until deliveriesStop after
// the start (0: never), and returns the reads made on each day.
func dayOfPolls(t testing.TB, days int, poll, deliveryEvery, deliveriesStop time.Duration) []int {
	log := logrus.New()
	log.SetOutput(io.Discard)
	w := &worker{vehicle: Vehicle{Permissions: []string{smartcar.PermReadCharge}}, poll: poll, log: log}
	clock := itest.NewClock()
	start := clock.Now()
	rng := rand.New(rand.NewPCG(1, 2))
	nextDelivery := start.Add(deliveryEvery / 2)
	reads := make([]int, days)
	w.due = start // the cold start's read
	for end := start.Add(time.Duration(days) * 24 * time.Hour); ; {
		now := w.due
		delivering := deliveryEvery > 0 && (deliveriesStop == 0 || nextDelivery.Before(start.Add(deliveriesStop)))
		if delivering && nextDelivery.Before(now) {
			now = nextDelivery
		}
		if !now.Before(end) {
			return reads
		}
		clock.Advance(now.Sub(clock.Now()))
		if now.Equal(w.due) {
			reads[int(now.Sub(start)/(24*time.Hour))]++
			w.scheduleAfter(now, "after a read")
			continue
		}
		w.hooks.lastAt, w.hooks.doorAt = now, now // a delivery carrying the door
		w.deliveriesFlow()
		nextDelivery = now.Add(deliveryEvery/2 + time.Duration(rng.Int64N(int64(deliveryEvery))))
	}
}

// The calls a day cost with webhooks flowing: the daily safety-net read and
// nothing more, against the poll interval's without them; and polling is
// back once deliveries have stopped for a day.
func TestPollBacksOffWhileWebhooksFlow(t *testing.T) {
	const days, poll = 30, 6 * time.Hour
	without := dayOfPolls(t, days, poll, 0, 0)
	flowing := dayOfPolls(t, days, poll, 20*time.Minute, 0)
	for day := 1; day < days; day++ {
		if without[day] != 4 {
			t.Errorf("day %d without webhooks: %d reads, want 4 (every 6 h)", day, without[day])
		}
		if flowing[day] > 1 {
			t.Errorf("day %d with webhooks flowing: %d reads, want the daily one at most", day, flowing[day])
		}
	}
	// The first delivery comes 10 min after the cold start's read: the poll
	// already scheduled 6 h later moves to a day later.
	if flowing[0] != 1 {
		t.Errorf("first day: %d reads, want only the cold start's", flowing[0])
	}
	// Deliveries sparser than the poll interval still count as flowing.
	sparse := dayOfPolls(t, days, poll, 8*time.Hour, 0)
	for day, n := range sparse {
		if n > 1 {
			t.Errorf("day %d with a delivery every ~8 h: %d reads, want the daily one at most", day, n)
		}
	}
	total := 0
	for _, n := range flowing[1:] {
		total += n
	}
	if total < days-2 {
		t.Errorf("%d safety-net reads in %d days: the car must still be read about daily", total, days-1)
	}
	t.Logf("reads a day, poll %s: %.2f without webhooks, %.2f with a delivery every ~20 min (first day, with the cold start's read: %d)",
		poll, mean(without[1:]), mean(flowing[1:]), flowing[0])

	// Deliveries for three days, then none: a day later the interval is back.
	stopped := dayOfPolls(t, 8, poll, 20*time.Minute, 3*24*time.Hour)
	for day := 1; day < 3; day++ {
		if stopped[day] > 1 {
			t.Errorf("day %d, deliveries flowing: %d reads", day, stopped[day])
		}
	}
	for day := 5; day < 8; day++ {
		if stopped[day] != 4 {
			t.Errorf("day %d, deliveries stopped on day 3: %d reads, want 4 again", day, stopped[day])
		}
	}
	t.Logf("deliveries stopping after day 3: reads by day %v", stopped)
}

func mean(ns []int) float64 {
	total := 0
	for _, n := range ns {
		total += n
	}
	return float64(total) / float64(len(ns))
}

// BenchmarkWebhookCallsPerDay reports the Smartcar reads a day one car
// costs over 30 simulated days with the default poll (6 h): with webhook
// deliveries flowing (the target: no read beyond the daily safety net) and
// without.
//
//	go test -run '^$' -bench WebhookCallsPerDay -benchtime 1x ./bridge
func BenchmarkWebhookCallsPerDay(b *testing.B) {
	var flowing, without []int
	for b.Loop() {
		flowing = dayOfPolls(b, 30, 6*time.Hour, 20*time.Minute, 0)
		without = dayOfPolls(b, 30, 6*time.Hour, 0, 0)
	}
	b.ReportMetric(mean(flowing[1:]), "reads/day-webhooks")
	b.ReportMetric(mean(without[1:]), "reads/day-polling")
	beyond := 0.0
	for _, n := range flowing[1:] {
		beyond += float64(max(n-1, 0))
	}
	b.ReportMetric(beyond/float64(len(flowing)-1), "reads/day-beyond-safety-net")
}
