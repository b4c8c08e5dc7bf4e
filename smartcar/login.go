package smartcar

import (
	"context"
	"fmt"
)

// CheckLogin asks the token chain for an access token and nothing else: no API
// call. The bridge uses it to notice, at no cost in quota, that a refused login
// works again (after `smartcar2mqtt auth` wrote a new token pair).
func (c *Client) CheckLogin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := c.tokens.Token(); err != nil {
		return fmt.Errorf("check login: %w", err)
	}
	return nil
}
