//go:build !unix

package lockfile

import "os"

// lock does nothing where there is no flock: there, nothing stops a second
// daemon on one DATA_DIR. The container image, the supported way to run
// smartcar2mqtt, is Linux.
func lock(*os.File) (held bool, err error) { return false, nil }
