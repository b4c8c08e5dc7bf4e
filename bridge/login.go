package bridge

import (
	"errors"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/smartcar2mqtt/smartcar2mqtt/smartcar"
)

// loginWatch turns a refused Smartcar login, seen by any one vehicle, into one clear
// log line and every vehicle offline; and its return into every vehicle back online,
// without a restart.
type loginWatch struct {
	log logrus.FieldLogger

	mu      sync.Mutex
	workers []*worker
	down    bool
	gone    bool // Smartcar switched API v2.0 off: said once
}

// retired says, once for all vehicles, that Smartcar no longer serves API v2.0
// to this application, and how to move to v3.
func (l *loginWatch) retired(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gone {
		return
	}
	l.gone = true
	var se *smartcar.Error
	requestID := ""
	if errors.As(err, &se) {
		requestID = se.RequestID
	}
	l.log.WithField("request_id", requestID).Error(smartcar.V2RetiredAdvice + ". Until then every vehicle is offline")
}

// add registers a worker, also one of a car connected while running.
func (l *loginWatch) add(w *worker) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.workers = append(l.workers, w)
}

func (l *loginWatch) lost(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return
	}
	l.down = true
	if errors.Is(err, smartcar.ErrNoToken) {
		l.log.Warn("no Smartcar login yet: connect the car (Connect a car on the web page, or `smartcar2mqtt auth`); the daemon picks the login up by itself. Every vehicle is offline until then")
	} else {
		l.log.WithError(err).Error(smartcar.LoginAdvice(err) + ". Every vehicle is offline until then")
	}
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
