package auth

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// maxTokenRequestBytes bounds a token request body.
const maxTokenRequestBytes = 16 << 10

// OAuth 2 error codes (RFC 6749 §5.2).
const (
	oauthInvalidRequest       = "invalid_request"
	oauthInvalidClient        = "invalid_client"
	oauthInvalidGrant         = "invalid_grant"
	oauthUnauthorizedClient   = "unauthorized_client"
	oauthUnsupportedGrantType = "unsupported_grant_type"
	oauthInvalidScope         = "invalid_scope"
	oauthServerError          = "server_error"
)

// Routes returns the issuer's endpoints by path, for mounting on the API
// server: JWKSPath, DiscoveryPath and TokenPath.
func (i *Issuer) Routes() map[string]http.Handler {
	return map[string]http.Handler{
		JWKSPath:      i.JWKSHandler(),
		DiscoveryPath: i.DiscoveryHandler(),
		TokenPath:     i.TokenHandler(),
	}
}

// JWKSHandler serves the public key set (GET, HEAD).
func (i *Issuer) JWKSHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(i.jwks)
	})
}

// DiscoveryHandler serves a minimal OpenID Provider / OAuth 2
// authorization server metadata document (GET, HEAD).
func (i *Issuer) DiscoveryHandler() http.Handler {
	doc, _ := json.Marshal(map[string]any{
		"issuer":                                i.cfg.Issuer,
		"jwks_uri":                              i.cfg.Issuer + JWKSPath,
		"token_endpoint":                        i.cfg.Issuer + TokenPath,
		"grant_types_supported":                 []string{"client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"scopes_supported":                      KnownScopes(),
		"response_types_supported":              []string{"token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"ES256"},
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(doc)
	})
}

// tokenResponse is the success body of RFC 6749 §5.1.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

// oauthError is the error body of RFC 6749 §5.2.
type oauthError struct {
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
	status      int
	basic       bool // a 401: answer with a Basic challenge (RFC 7235 §3.1)
}

func (e *oauthError) Error() string { return e.Code + ": " + e.Description }

func oerr(status int, code, desc string) *oauthError {
	return &oauthError{Code: code, Description: desc, status: status}
}

// TokenHandler implements the token endpoint for the client-credentials
// grant (RFC 6749 §4.4): POST, form-encoded, client authentication by HTTP
// Basic or by client_id/client_secret in the body, optional scope.
func (i *Issuer) TokenHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Pragma", "no-cache")
		resp, oe := i.token(r)
		if oe != nil {
			if oe.status == http.StatusMethodNotAllowed {
				w.Header().Set("Allow", "POST")
			}
			if oe.basic {
				w.Header().Set("WWW-Authenticate", `Basic realm="legiond", charset="UTF-8"`)
			}
			writeJSON(w, oe.status, oe)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (i *Issuer) token(r *http.Request) (*tokenResponse, *oauthError) {
	if r.Method != http.MethodPost {
		return nil, oerr(http.StatusMethodNotAllowed, oauthInvalidRequest, "use POST")
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, oerr(http.StatusBadRequest, oauthInvalidRequest, "content type must be application/x-www-form-urlencoded")
	}
	if r.URL.RawQuery != "" {
		return nil, oerr(http.StatusBadRequest, oauthInvalidRequest, "parameters belong in the body, not the URL")
	}
	r.Body = http.MaxBytesReader(nil, r.Body, maxTokenRequestBytes)
	if err := r.ParseForm(); err != nil {
		return nil, oerr(http.StatusBadRequest, oauthInvalidRequest, "malformed or oversized form")
	}
	form := r.PostForm
	for k, v := range form {
		if len(v) > 1 {
			return nil, oerr(http.StatusBadRequest, oauthInvalidRequest, "parameter "+k+" repeated")
		}
	}
	switch gt := form.Get("grant_type"); gt {
	case "client_credentials":
	case "":
		return nil, oerr(http.StatusBadRequest, oauthInvalidRequest, "grant_type is required")
	default:
		return nil, oerr(http.StatusBadRequest, oauthUnsupportedGrantType, "only client_credentials is supported")
	}

	id, secret, oe := clientCredentials(r, form)
	if oe != nil {
		return nil, oe
	}
	denied := &oauthError{Code: oauthInvalidClient, Description: "client authentication failed", status: http.StatusUnauthorized, basic: true}
	if i.cfg.Clients == nil {
		return nil, denied
	}
	client, err := i.cfg.Clients.LookupClient(r.Context(), id)
	if errors.Is(err, ErrClientNotFound) {
		HashSecret(secret) // similar work for unknown and known ids
		return nil, denied
	}
	if err != nil {
		i.cfg.Logger.Error("token endpoint: client lookup failed", "client_id", id, "err", err)
		return nil, oerr(http.StatusInternalServerError, oauthServerError, "client lookup failed")
	}
	if subtle.ConstantTimeCompare(HashSecret(secret), client.SecretHash) != 1 {
		return nil, denied
	}
	now := i.cfg.Now()
	if client.Disabled || (!client.ExpiresAt.IsZero() && !now.Before(client.ExpiresAt)) {
		return nil, denied
	}

	tmpl := templateOf(client)
	if tmpl.Role != RoleIntegration {
		return nil, oerr(http.StatusBadRequest, oauthUnauthorizedClient, "client is not an integration client")
	}
	granted := tmpl.Scopes
	if s := form.Get("scope"); s != "" {
		granted = nil
		for _, want := range strings.Fields(s) {
			if !slices.Contains(tmpl.Scopes, want) {
				return nil, oerr(http.StatusBadRequest, oauthInvalidScope, "scope "+short(want)+" is not granted to this client")
			}
			if !slices.Contains(granted, want) {
				granted = append(granted, want)
			}
		}
	}
	if !slices.ContainsFunc(granted, func(s string) bool { return slices.Contains(KnownScopes(), s) }) {
		return nil, oerr(http.StatusBadRequest, oauthInvalidScope, "no usable scope requested")
	}
	tmpl.Scopes = granted
	if err := tmpl.Validate(); err != nil {
		return nil, oerr(http.StatusBadRequest, oauthInvalidGrant, "the client's grant is not usable: "+err.Error())
	}
	ttl := i.cfg.DefaultTTL
	if client.TokenTTL > 0 && client.TokenTTL < i.cfg.MaxTTL {
		ttl = client.TokenTTL
	}
	if !client.ExpiresAt.IsZero() {
		if left := client.ExpiresAt.Sub(now).Truncate(time.Second); left < ttl {
			ttl = max(left, time.Second)
		}
	}
	tok, err := i.issue(r.Context(), tmpl, ttl, "client_credentials")
	if err != nil {
		i.cfg.Logger.Error("token endpoint: signing failed", "client_id", id, "err", err)
		return nil, oerr(http.StatusInternalServerError, oauthServerError, "could not issue a token")
	}
	return &tokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int64(ttl / time.Second), Scope: strings.Join(granted, " ")}, nil
}

// clientCredentials returns the client id and secret from HTTP Basic
// (RFC 6749 §2.3.1: form-urlencoded, then base64) or from the body. Using
// both is an error.
func clientCredentials(r *http.Request, form url.Values) (string, string, *oauthError) {
	bodyID, bodySecret := form.Get("client_id"), form.Get("client_secret")
	if r.Header.Get("Authorization") != "" {
		u, p, ok := r.BasicAuth()
		if !ok {
			return "", "", &oauthError{Code: oauthInvalidClient, Description: "malformed Basic authorization", status: http.StatusUnauthorized, basic: true}
		}
		if bodySecret != "" {
			return "", "", oerr(http.StatusBadRequest, oauthInvalidRequest, "use one client authentication method")
		}
		id, err1 := url.QueryUnescape(u)
		secret, err2 := url.QueryUnescape(p)
		if err1 != nil || err2 != nil || id == "" {
			return "", "", &oauthError{Code: oauthInvalidClient, Description: "malformed Basic authorization", status: http.StatusUnauthorized, basic: true}
		}
		if bodyID != "" && bodyID != id {
			return "", "", oerr(http.StatusBadRequest, oauthInvalidRequest, "client_id differs from the Basic credentials")
		}
		return id, secret, nil
	}
	if bodyID == "" || bodySecret == "" {
		return "", "", &oauthError{Code: oauthInvalidClient, Description: "client authentication required", status: http.StatusUnauthorized, basic: true}
	}
	return bodyID, bodySecret, nil
}
