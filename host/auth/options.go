package auth

import (
	"crypto/x509"
	"log/slog"
	"net/url"
	"time"
)

// Defaults of Options, applied by New to zero fields.
const (
	DefaultMaxTokenBytes          = 8 << 10
	DefaultJWKSRefreshInterval    = time.Hour
	DefaultJWKSUnknownKIDInterval = time.Minute
	DefaultJWKSTimeout            = 10 * time.Second
	DefaultJWKSMaxBytes           = 1 << 20
)

// Options configure the Verifier of one integration. They are plain values
// a configuration layer fills; New checks them and fills defaults, and
// refuses a bad field with an *OptionError naming it. Secrets are given as
// bytes: reading them from an environment variable or a file (never from
// the configuration text) is the caller's job.
type Options struct {
	// --- Keys: at least one of HMACSecret, PublicKeys, JWKSURL. ---

	// HMACSecret verifies HS256/HS384/HS512 tokens. At least 32 bytes
	// (RFC 7518 section 3.2: no shorter than the hash); HS384 needs 48 and
	// HS512 64. Default: none.
	HMACSecret []byte

	// PublicKeys verify RS*, PS* (RSA, at least 2048 bits), ES256/384/512
	// (ECDSA P-256/384/521) and EdDSA (Ed25519) tokens. Default: none.
	PublicKeys []PublicKey

	// JWKSURL is a JSON Web Key Set fetched by New (which fails if the first
	// fetch fails, unless JWKSOptionalAtStart), then refreshed every
	// JWKSRefreshInterval. Must be https unless JWKSAllowHTTP. A failed
	// refresh keeps the keys already fetched. Default: none.
	JWKSURL string
	// JWKSRefreshInterval: time between refreshes. Default 1 hour.
	JWKSRefreshInterval time.Duration
	// JWKSUnknownKIDInterval: a token naming a kid the set does not hold
	// triggers one refresh, at most once per this interval; other such
	// tokens are refused as unknown_key at once, without waiting. Must be at
	// least JWKSTimeout. Default 1 minute.
	JWKSUnknownKIDInterval time.Duration
	// JWKSTimeout bounds each fetch (a verification that triggers a refresh
	// waits at most this long). Default 10 seconds.
	JWKSTimeout time.Duration
	// JWKSMaxBytes caps the size of the set's HTTP response. Default 1 MiB.
	JWKSMaxBytes int64
	// JWKSRootCAs are the authorities the JWKS server's certificate must
	// chain to. Default nil: the system's.
	JWKSRootCAs *x509.CertPool
	// JWKSAllowHTTP allows an http:// URL (and redirects to one): keys
	// fetched in clear can be replaced by anyone on the path. Default false.
	JWKSAllowHTTP bool
	// JWKSOptionalAtStart lets New succeed when the first fetch fails:
	// tokens are then refused as unknown_key until a fetch succeeds.
	// Default false (New fails, naming the URL).
	JWKSOptionalAtStart bool

	// --- Checks. ---

	// Algorithms is the allow-list of "alg" values. "none" is never
	// allowed; each entry needs a key of its kind (an HS* algorithm the
	// HMACSecret, which is never tried on an RS/PS/ES/EdDSA token, and no
	// public key is ever tried on an HS* token). Default: every algorithm
	// the configured keys can verify.
	Algorithms []string
	// Leeway is the clock skew allowed on exp, nbf and iat. Default 0.
	Leeway time.Duration
	// Issuer, when set, must equal the token's iss. Default "" (not checked).
	Issuer string
	// Audience, when set, must contain one of the token's aud values.
	// Default none (not checked).
	Audience []string
	// AllowNoExpiry accepts tokens without exp (they never expire).
	// Default false: a token without exp is refused.
	AllowNoExpiry bool
	// MaxTokenBytes refuses longer tokens before any decoding. Default 8 KiB.
	MaxTokenBytes int
	// KeepAfterExpiry keeps a connection open past its token's exp.
	// Default false: the host closes it at exp + Leeway (see CloseAt).
	KeepAfterExpiry bool

	// --- Where the token is: at least one. A handshake source is read in
	// the order BearerHeader, Subprotocol, QueryParam, Cookie; the first one
	// present is used. ---

	// BearerHeader reads "Authorization: Bearer <token>". Default false.
	BearerHeader bool
	// Subprotocol reads a Sec-WebSocket-Protocol entry "es.token.<token>"
	// (see SubprotocolPrefix). Default false.
	Subprotocol bool
	// QueryParam reads the URL query parameter of this name (it ends up in
	// access logs: prefer short-lived tokens). Default "" (not read).
	QueryParam string
	// Cookie reads the cookie of this name. A browser sends it from any
	// site's page: use it only with an Origin allow-list. Default "".
	Cookie string
	// MessageField reads this string field of the first message when the
	// handshake carries no token. Default "" (not read).
	MessageField string

	// Logger receives failed JWKS refreshes. Default slog.Default().
	Logger *slog.Logger
}

// PublicKey is one PEM-encoded public key ("PUBLIC KEY", "RSA PUBLIC KEY"
// or a "CERTIFICATE"); a private key is refused.
type PublicKey struct {
	// ID, when set, is the kid of tokens this key verifies: a token naming
	// it is tried with this key only. Default "" (tried on every token of
	// its algorithm family that names no known kid).
	ID  string
	PEM []byte
}

// withDefaults checks the scalar fields and fills the zero ones. Keys and
// algorithms are checked by newKeySet and allowedAlgorithms.
func (o Options) withDefaults() (Options, error) {
	if len(o.HMACSecret) == 0 && len(o.PublicKeys) == 0 && o.JWKSURL == "" {
		return o, optErr("HMACSecret", "no key: give HMACSecret, PublicKeys or JWKSURL")
	}
	if !o.BearerHeader && !o.Subprotocol && o.QueryParam == "" && o.Cookie == "" && o.MessageField == "" {
		return o, optErr("QueryParam", "no token source: set BearerHeader, Subprotocol, QueryParam, Cookie or MessageField")
	}
	if o.Leeway < 0 {
		return o, optErr("Leeway", "%v is negative", o.Leeway)
	}
	if o.MaxTokenBytes < 0 {
		return o, optErr("MaxTokenBytes", "%d is negative", o.MaxTokenBytes)
	}
	if o.MaxTokenBytes == 0 {
		o.MaxTokenBytes = DefaultMaxTokenBytes
	}
	for i, a := range o.Audience {
		if a == "" {
			return o, optErrAt("Audience", i, "an empty audience matches nothing")
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.JWKSURL != "" {
		if err := o.jwksDefaults(); err != nil {
			return o, err
		}
	}
	return o, nil
}

func (o *Options) jwksDefaults() error {
	u, err := url.Parse(o.JWKSURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return optErr("JWKSURL", "%q is not an http(s) URL", o.JWKSURL)
	}
	if u.Scheme == "http" && !o.JWKSAllowHTTP {
		return optErr("JWKSURL", "%q is plain http: keys fetched in clear can be replaced on the way; use https (or set JWKSAllowHTTP)", u.Redacted())
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"JWKSRefreshInterval", &o.JWKSRefreshInterval, DefaultJWKSRefreshInterval},
		{"JWKSUnknownKIDInterval", &o.JWKSUnknownKIDInterval, DefaultJWKSUnknownKIDInterval},
		{"JWKSTimeout", &o.JWKSTimeout, DefaultJWKSTimeout},
	} {
		if *d.v < 0 {
			return optErr(d.name, "%v is negative", *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if o.JWKSUnknownKIDInterval < o.JWKSTimeout {
		return optErr("JWKSUnknownKIDInterval", "%v is shorter than JWKSTimeout (%v): a verification could wait for the next refresh", o.JWKSUnknownKIDInterval, o.JWKSTimeout)
	}
	if o.JWKSMaxBytes < 0 {
		return optErr("JWKSMaxBytes", "%d is negative", o.JWKSMaxBytes)
	}
	if o.JWKSMaxBytes == 0 {
		o.JWKSMaxBytes = DefaultJWKSMaxBytes
	}
	return nil
}
