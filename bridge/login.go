package bridge

import (
	"sync"

	"github.com/sirupsen/logrus"
)

// loginWatch turns a refused Smartcar login, seen by any one vehicle, into one clear
// log line and every vehicle offline; and its return into every vehicle back online,
// without a restart.
type loginWatch struct {
	log     logrus.FieldLogger
	workers []*worker // set once, before the workers run

	mu   sync.Mutex
	down bool
}

func (l *loginWatch) lost(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return
	}
	l.down = true
	l.log.WithError(err).Error("Smartcar refused the login: every vehicle is offline. Run `smartcar2mqtt auth` to log in again; the daemon picks up the new login by itself, no restart needed")
	l.askAll()
}

func (l *loginWatch) restored() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.down {
		return
	}
	l.down = false
	l.log.Info("the Smartcar login works again: vehicles are back online")
	l.askAll()
}

func (l *loginWatch) askAll() {
	for _, w := range l.workers {
		w.mail.requestCheckLogin()
	}
}
