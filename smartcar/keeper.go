package smartcar

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"
)

// KeeperOptions tunes a FleetKeeper; zero values take the defaults.
type KeeperOptions struct {
	Every     time.Duration // between listings: a day
	Look      time.Duration // between looks at the cache file for cars `auth` connected: 10 s
	MinRetry  time.Duration // the first wait after a failed listing: 30 s
	MaxRetry  time.Duration // the longest: 30 min
	StaleWait time.Duration // the least time between listings asked for by Stale: 1 h

	// Changed is given every change: a listing's, or the cache `auth` rewrote.
	Changed func(Update)
	// Trouble is told when listing fails after working (or at the first
	// try), with the wait before the next try; Recovered when it works again.
	// Between the two, failures are not reported: one line per outage.
	Trouble   func(err error, retryIn time.Duration)
	Recovered func()
}

// FleetKeeper keeps the vehicle cache current in the background: a listing a
// day, one soon after Smartcar answered that what we know is stale, and
// bounded retries while Smartcar is out of reach or refuses the login. A
// daemon never waits for it to start.
type FleetKeeper struct {
	cache FleetCache
	src   fleetSource
	only  []string
	opts  KeeperOptions

	stale    chan struct{} // capacity 1, like look and listNow
	look     chan struct{}
	listNow  chan struct{}
	mu       sync.Mutex
	suspects []string
}

// NewFleetKeeper keeps cache current from src for the vehicle filter only.
func NewFleetKeeper(cache FleetCache, src fleetSource, only []string, opts KeeperOptions) *FleetKeeper {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.Every, 24*time.Hour)
	def(&opts.Look, 10*time.Second)
	def(&opts.MinRetry, 30*time.Second)
	def(&opts.MaxRetry, 30*time.Minute)
	def(&opts.StaleWait, time.Hour)
	if opts.Changed == nil {
		opts.Changed = func(Update) {}
	}
	if opts.Trouble == nil {
		opts.Trouble = func(error, time.Duration) {}
	}
	if opts.Recovered == nil {
		opts.Recovered = func() {}
	}
	return &FleetKeeper{cache: cache, src: src, only: only, opts: opts,
		stale: make(chan struct{}, 1), look: make(chan struct{}, 1), listNow: make(chan struct{}, 1)}
}

// Stale asks for a listing soon: Smartcar answered 403 or 404 for a vehicle.
// It never blocks.
func (k *FleetKeeper) Stale() {
	select {
	case k.stale <- struct{}{}:
	default:
	}
}

// LookNow asks for a look at the cache file at once, instead of at the next
// tick: Connect on the web page has just saved the listing showing a new car.
// It never blocks.
func (k *FleetKeeper) LookNow() { nudge(k.look) }

// ListNow asks for a full listing at once: a new API v2.0 login, whose cars
// and permissions may differ from the cached ones. It never blocks.
func (k *FleetKeeper) ListNow() { nudge(k.listNow) }

func nudge(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Suspect adds a vehicle Home Assistant knows from an earlier run and the
// cache does not: the next listings count it as missing like a cached one,
// so it is removed only when Smartcar positively lacks it.
func (k *FleetKeeper) Suspect(id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.suspects = append(k.suspects, id)
}

func (k *FleetKeeper) takeSuspects() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := k.suspects
	k.suspects = nil
	return s
}

func (k *FleetKeeper) giveBack(s []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.suspects = append(k.suspects, s...)
}

// Run lists when known says so (at once for a cache never listed, older than
// a day, or lacking a filtered vehicle), then keeps going until ctx ends. It
// returns an *UnknownVehiclesError when a listing shows the vehicle filter
// names a car the account lacks; nothing else stops it.
func (k *FleetKeeper) Run(ctx context.Context, known Known) error {
	now := k.cache.now()
	next := known.ListedAt.Add(k.opts.Every)
	if known.ListedAt.IsZero() || !known.Complete {
		next = now
	}
	retry := k.opts.MinRetry
	failing := false
	stale := false         // Smartcar said what we know is out of date: list it all again
	var listedAt time.Time // of this process's last listing try

	timer := time.NewTimer(max(0, next.Sub(now)))
	defer timer.Stop()
	look := time.NewTicker(k.opts.Look)
	defer look.Stop()
	// What the file held at the last look. Its content, not its time: a
	// rewrite within the file system's timestamp tick keeps the same mtime.
	last := k.cache.raw()
	lookAtCache := func() {
		if now := k.cache.raw(); !bytes.Equal(now, last) {
			last = now
			if vs, _, err := k.cache.Cached(k.src.Version(), k.only); err == nil {
				k.opts.Changed(Update{Vehicles: vs})
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-k.look:
			look.Reset(k.opts.Look)
			lookAtCache()
			continue
		case <-k.listNow:
			stale = true
		case <-look.C:
			lookAtCache()
			continue
		case <-k.stale:
			stale = true
			if wait := k.opts.StaleWait - k.cache.now().Sub(listedAt); wait > 0 && !listedAt.IsZero() {
				if next.Sub(k.cache.now()) > wait {
					next = k.cache.now().Add(wait)
					timer.Reset(wait)
				}
				continue
			}
		case <-timer.C:
		}

		listedAt = k.cache.now()
		suspects := k.takeSuspects()
		u, err := k.cache.Refresh(ctx, k.src, k.only, suspects, !stale)
		last = k.cache.raw() // our own write is no news
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			var unknown *UnknownVehiclesError
			if errors.As(err, &unknown) {
				return err
			}
			k.giveBack(suspects)
			if !failing {
				failing = true
				k.opts.Trouble(err, retry)
			}
			next = listedAt.Add(retry)
			retry = min(2*retry, k.opts.MaxRetry)
		default:
			if failing {
				failing = false
				k.opts.Recovered()
			}
			retry = k.opts.MinRetry
			stale = false
			k.opts.Changed(u)
			next = listedAt.Add(k.opts.Every)
		}
		timer.Reset(max(0, next.Sub(k.cache.now())))
	}
}
