package auth

import "errors"

// Token verification errors. Verify wraps exactly one of them, with the
// detail, so callers match with errors.Is and show the text.
var (
	// ErrTokenMissing: no bearer token in the request.
	ErrTokenMissing = errors.New("bearer token missing")
	// ErrTokenMalformed: not a compact JWS JWT, too large, or a header or
	// payload that does not decode.
	ErrTokenMalformed = errors.New("token malformed")
	// ErrTokenExpired: exp is in the past (beyond the leeway).
	ErrTokenExpired = errors.New("token expired")
	// ErrTokenNotYetValid: nbf or iat is in the future (beyond the leeway).
	ErrTokenNotYetValid = errors.New("token not yet valid")
	// ErrTokenSignature: the signature does not verify, the algorithm is
	// not allowed or does not fit the key, or no key has the token's kid.
	ErrTokenSignature = errors.New("token signature invalid")
	// ErrTokenIssuer: iss is not the configured issuer.
	ErrTokenIssuer = errors.New("token issuer not accepted")
	// ErrTokenAudience: aud does not name the configured audience.
	ErrTokenAudience = errors.New("token audience not accepted")
	// ErrClaims: the signature is good but the claims do not make a valid
	// principal (unknown role, missing tenant, missing exp, ...).
	ErrClaims = errors.New("token claims invalid")
	// ErrKeySet: the JSON Web Key Set could not be fetched or parsed. The
	// token may be fine; the caller should retry later.
	ErrKeySet = errors.New("key set unavailable")
)

// Authorization errors of a Principal.
var (
	// ErrNotVisible: the principal may not see that tenant. The API maps it
	// to NotFound, so that guessing ids reveals nothing.
	ErrNotVisible = errors.New("not visible to the caller")
	// ErrScopeAmbiguous: the principal spans several customers; the caller
	// must name one (Principal.ScopeFor).
	ErrScopeAmbiguous = errors.New("principal spans several customers; name one")
)

// Errors of the configuration and of the issuer.
var (
	// ErrConfig is an invalid configuration.
	ErrConfig = errors.New("auth: invalid configuration")
	// ErrClientNotFound is returned by a ClientStore for an unknown client.
	ErrClientNotFound = errors.New("client not found")
	// ErrIssuerKey: the issuer's signing key could not be loaded or made.
	ErrIssuerKey = errors.New("issuer signing key unusable")
	// ErrTTL: a requested token lifetime is not positive or above the
	// issuer's maximum.
	ErrTTL = errors.New("token lifetime out of range")
)
