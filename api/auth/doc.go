// Package auth authenticates API callers: OAuth 2 bearer tokens (JWT
// access tokens) verified against an issuer's JSON Web Key Set, the claims
// model (role and tenant scope) and the Principal derived from it, the
// Connect interceptors that put a Principal into every unary and streaming
// call and limit each client's request rate, and a small embedded token
// issuer for development (client-credentials grant, JWKS, discovery).
//
// Verification accepts ES256 and RS256 only, requires exp, checks nbf, iat,
// iss and aud with a small leeway, and matches the token's algorithm to the
// key's type, so "none", HMAC and key-confusion tokens are refused.
//
// It owns nothing in storage: the registry's API clients reach the issuer
// through the ClientStore port. It converts a Principal into a
// postgres.Scope and must not query the registry itself; tenant filtering
// is the registry's row-level security, guided by that scope. It must not
// log tokens or secrets, and it counts failures instead of logging each.
package auth
