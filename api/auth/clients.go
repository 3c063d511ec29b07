package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Client is an OAuth 2 client allowed the client-credentials grant: an
// integration's credential. The registry's API clients map onto it.
type Client struct {
	// ID is the client_id.
	ID string
	// SecretHash is HashSecret(secret); the secret itself is never stored.
	SecretHash []byte
	// Claims is the template of the client's tokens: role (normally
	// RoleIntegration), partner, customers, sites, and the scopes the
	// client may request. Subject and ClientID default to ID.
	Claims Claims
	// Disabled clients are refused (invalid_client).
	Disabled bool
	// ExpiresAt, when set, is when the credential stops working.
	ExpiresAt time.Time
	// TokenTTL overrides the issuer's token lifetime for this client
	// (0: the issuer's DefaultTTL; capped at its MaxTTL).
	TokenTTL time.Duration
}

// ClientStore is the port through which the issuer finds clients. It
// returns ErrClientNotFound (possibly wrapped) for an unknown id.
type ClientStore interface {
	LookupClient(ctx context.Context, clientID string) (Client, error)
}

// HashSecret is how client secrets are compared and stored: SHA-256, the
// same as the registry's postgres.HashClientSecret. Secrets are 256-bit
// random values, so a slow password hash would add nothing.
func HashSecret(secret string) []byte {
	s := sha256.Sum256([]byte(secret))
	return s[:]
}

// MemoryClientStore is an in-memory ClientStore for development and
// tests. It is safe for concurrent use.
type MemoryClientStore struct {
	mu      sync.RWMutex
	clients map[string]Client
}

// NewMemoryClientStore returns an empty store.
func NewMemoryClientStore() *MemoryClientStore {
	return &MemoryClientStore{clients: make(map[string]Client)}
}

// Add stores (or replaces) a client after checking its template.
func (s *MemoryClientStore) Add(c Client) error {
	if c.ID == "" {
		return fmt.Errorf("%w: client id is required", ErrConfig)
	}
	if len(c.SecretHash) != sha256.Size {
		return fmt.Errorf("%w: client %s: secret hash must be SHA-256", ErrConfig, c.ID)
	}
	if err := templateOf(c).Validate(); err != nil {
		return fmt.Errorf("client %s: %w", c.ID, err)
	}
	c.SecretHash = slices.Clone(c.SecretHash)
	s.mu.Lock()
	s.clients[c.ID] = c
	s.mu.Unlock()
	return nil
}

// Generate creates a client with a random id ("lgc_…") and secret
// ("lgs_…", 256 bits) from the claims template, stores it and returns the
// id and the secret, which is not kept.
func (s *MemoryClientStore) Generate(tmpl Claims) (id, secret string, err error) {
	var idb [8]byte
	var sec [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", "", err
	}
	if _, err := rand.Read(sec[:]); err != nil {
		return "", "", err
	}
	id = "lgc_" + hex.EncodeToString(idb[:])
	secret = "lgs_" + base64.RawURLEncoding.EncodeToString(sec[:])
	if err := s.Add(Client{ID: id, SecretHash: HashSecret(secret), Claims: tmpl}); err != nil {
		return "", "", err
	}
	return id, secret, nil
}

// LookupClient implements ClientStore.
func (s *MemoryClientStore) LookupClient(_ context.Context, clientID string) (Client, error) {
	s.mu.RLock()
	c, ok := s.clients[clientID]
	s.mu.RUnlock()
	if !ok {
		return Client{}, ErrClientNotFound
	}
	return c, nil
}

// templateOf returns the client's claims with Subject and ClientID filled.
func templateOf(c Client) Claims {
	t := c.Claims
	t.CustomerIDs, t.SiteIDs, t.Scopes = slices.Clone(t.CustomerIDs), slices.Clone(t.SiteIDs), slices.Clone(t.Scopes)
	if t.Subject == "" {
		t.Subject = c.ID
	}
	if t.ClientID == "" {
		t.ClientID = c.ID
	}
	return t
}
