package replication

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"
)

// ChangeMembership asks a running cluster, through any of seeds (following
// redirects to the leader), to add a voter (address non-empty) or remove
// one (address empty). It is the operator's tool (`legiond cluster
// join|leave`): clientTLS must carry a certificate of the cluster CA.
func ChangeMembership(ctx context.Context, clientTLS *tls.Config, seeds []string, id, address string) error {
	if id == "" || len(id) > maxMemberID || len(address) > 255 {
		return fmt.Errorf("membership change: member id %q, address %q: %w", id, address, ErrInvalid)
	}
	if err := checkClientTLS(clientTLS); err != nil {
		return err
	}
	op, body := byte(opRemove), appendShort(nil, id)
	if address != "" {
		op, body = opVoter, appendShort(body, address)
	}
	g := &Group{fwdC: newFwdClient(clientTLS, DefaultDialTimeout, 1<<20, nil)}
	defer g.fwdC.close()
	var lastErr error
	for attempt := 0; ; attempt++ {
		for _, seed := range seeds {
			addr := seed
			for hop := 0; hop < 3 && addr != ""; hop++ {
				done, redirect, err := g.callMembershipRedirect(ctx, addr, op, body)
				if done {
					return err
				}
				addr = redirect
			}
			lastErr = fmt.Errorf("no leader reachable through %s", seed)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("membership change: %w (%w)", ctx.Err(), lastErr)
		case <-time.After(backoff(attempt)):
		}
	}
}
