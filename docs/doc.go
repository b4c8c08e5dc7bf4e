// Package docs holds the user documentation: the Home Assistant guide and
// its automation blueprints. It has no code; it is a package so that its
// tests, which check the examples against what the discovery package
// really publishes, run with the rest (go test ./...).
package docs
