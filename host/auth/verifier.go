package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Verifier checks the tokens of one integration. All its methods may be
// called concurrently. Close it when the integration is replaced or the
// server stops (it owns the JWKS refresh goroutine).
type Verifier struct {
	opts   Options
	algs   []string
	keys   *keySet
	remote *remoteKeys // nil without JWKSURL
	parser *jwt.Parser
}

// Claims are a verified token's claims.
type Claims struct {
	// Map is the claims object. It is JSON-faithful: numbers are
	// json.Number (an integer id beyond 2^53 keeps every digit), objects
	// map[string]any, arrays []any, null nil.
	Map map[string]any
	// JSON is Map encoded as a JSON object, for a JSON -> Lua converter.
	JSON []byte
	// Expiry is exp, zero when the token has none (Options.AllowNoExpiry).
	Expiry time.Time
}

// New checks o, fills its defaults and, with a JWKSURL, fetches the set
// once (blocking up to JWKSTimeout). A bad field is an *OptionError.
func New(o Options) (*Verifier, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	ks, err := newKeySet(o)
	if err != nil {
		return nil, err
	}
	algs, err := allowedAlgorithms(o, ks)
	if err != nil {
		return nil, err
	}
	popts := []jwt.ParserOption{
		jwt.WithValidMethods(algs),
		jwt.WithJSONNumber(),
		jwt.WithLeeway(o.Leeway),
		jwt.WithIssuedAt(),
	}
	if !o.AllowNoExpiry {
		popts = append(popts, jwt.WithExpirationRequired())
	}
	if o.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(o.Issuer))
	}
	if len(o.Audience) > 0 {
		popts = append(popts, jwt.WithAudience(o.Audience...))
	}
	v := &Verifier{opts: o, algs: algs, keys: ks, parser: jwt.NewParser(popts...)}
	if o.JWKSURL != "" {
		if v.remote, err = newRemoteKeys(o); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// Close stops the JWKS refresh. Tokens already verified stay valid; Verify
// after Close still works with the keys held.
func (v *Verifier) Close() {
	if v.remote != nil {
		v.remote.stop()
	}
}

// Algorithms is the allow-list in use (Options.Algorithms or its default).
func (v *Verifier) Algorithms() []string { return slices.Clone(v.algs) }

// CloseAt is when a connection opened with c must be closed with 1008
// token_expired: exp plus the leeway. ok is false when the connection is
// kept (Options.KeepAfterExpiry, or a token without exp).
func (v *Verifier) CloseAt(c Claims) (at time.Time, ok bool) {
	if v.opts.KeepAfterExpiry || c.Expiry.IsZero() {
		return time.Time{}, false
	}
	return c.Expiry.Add(v.opts.Leeway), true
}

// Verify checks one token (see the package documentation for the order of
// the checks). ctx bounds a JWKS refresh an unknown kid may trigger. A
// refusal is an *Error.
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	if token == "" {
		return Claims{}, refuse(ReasonMissing, nil, "the token is empty")
	}
	if len(token) > v.opts.MaxTokenBytes {
		return Claims{}, refuse(ReasonTooLarge, nil, "the token is %d bytes, over the limit of %d", len(token), v.opts.MaxTokenBytes)
	}
	mc := jwt.MapClaims{}
	t, err := v.parser.ParseWithClaims(token, mc, v.keyFunc(ctx))
	if err != nil {
		return Claims{}, v.refusal(t, mc, err)
	}
	out := Claims{Map: map[string]any(mc)}
	if exp, err := mc.GetExpirationTime(); err == nil && exp != nil {
		out.Expiry = exp.Time
	}
	if out.JSON, err = json.Marshal(out.Map); err != nil {
		return Claims{}, refuse(ReasonMalformed, err, "the token's claims cannot be encoded as JSON")
	}
	return out, nil
}

// keyFunc picks the key(s) for a token whose alg is already in the
// allow-list: an HS* token gets the HMAC secret and nothing else; any other
// gets public keys of its family only: the static key its kid names, else
// the JWKS key its kid names, else every static (and, without a kid, every
// fetched) key that fits its alg. Keys named in the token itself (jwk, jku,
// x5u, x5c headers) are never used.
func (v *Verifier) keyFunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		if _, ok := t.Header["crit"]; ok {
			return nil, refuse(ReasonMalformed, nil, `the token's header has a "crit" parameter, which this server does not support`)
		}
		alg := t.Method.Alg()
		fam := algorithms[alg]
		if fam == famHMAC {
			if len(v.keys.secret) == 0 { // unreachable: the allow-list has no HS* then
				return nil, refuse(ReasonUnknownKey, nil, "no key known for this token")
			}
			return v.keys.secret, nil
		}
		kidV, hasKid := t.Header["kid"]
		kid, isString := kidV.(string)
		if hasKid && !isString {
			return nil, refuse(ReasonMalformed, nil, `the token's "kid" is not a string`)
		}
		if hasKid {
			if k := v.keys.byID[kid]; k != nil {
				if !k.fits(alg) {
					return nil, refuse(ReasonUnknownKey, fmt.Errorf("key %q does not verify %s", kid, alg), "no key known for this token")
				}
				return k.key, nil
			}
			if v.remote != nil {
				return v.remote.key(ctx, t, fam)
			}
		}
		var set jwt.VerificationKeySet
		for i := range v.keys.static {
			if k := &v.keys.static[i]; k.fits(alg) && (k.id == "" || !hasKid) {
				set.Keys = append(set.Keys, k.key)
			}
		}
		if v.remote != nil && !hasKid {
			got, err := v.remote.key(ctx, t, fam)
			if err != nil {
				return nil, err
			}
			set.Keys = append(set.Keys, got.(jwt.VerificationKeySet).Keys...)
		}
		if len(set.Keys) == 0 {
			return nil, refuse(ReasonUnknownKey, fmt.Errorf("no key for %s (kid %q)", alg, kid), "no key known for this token")
		}
		return set, nil
	}
}

// refusal turns an error of jwt/v5 into an *Error. Claims are validated
// only after the signature verified, so what it tells about them is about a
// genuine token.
func (v *Verifier) refusal(t *jwt.Token, mc jwt.MapClaims, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	alg := ""
	if t != nil && t.Method != nil {
		alg = t.Method.Alg()
	} else if t != nil {
		alg, _ = t.Header["alg"].(string)
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return refuse(ReasonMalformed, err, "the token is not a well-formed JWT")
	case (errors.Is(err, jwt.ErrTokenUnverifiable) || errors.Is(err, jwt.ErrTokenSignatureInvalid)) && !slices.Contains(v.algs, alg):
		return refuse(ReasonAlgorithm, err, "the token's algorithm %q is not accepted", truncate(alg, 16))
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return refuse(ReasonUnknownKey, err, "no key known for this token")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return refuse(ReasonBadSignature, err, "the token's signature does not verify")
	}
	// The signature verified; a claim failed. One reason is told, in this order.
	switch {
	case errors.Is(err, jwt.ErrInvalidType):
		return refuse(ReasonMalformed, err, "a time claim (exp, nbf, iat) is not a number, or aud is not a string or a list of strings")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return refuse(ReasonMissingClaim, err, "the token has no %s claim", v.missingClaim(mc))
	case errors.Is(err, jwt.ErrTokenExpired):
		exp, _ := mc.GetExpirationTime()
		return refuse(ReasonExpired, err, "the token expired at %s", exp.UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		nbf, _ := mc.GetNotBefore()
		return refuse(ReasonNotYetValid, err, "the token is not valid before %s", nbf.UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return refuse(ReasonNotYetValid, err, "the token is issued in the future")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return refuse(ReasonWrongIssuer, err, "the token's issuer is not accepted here")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return refuse(ReasonWrongAudience, err, "the token is not meant for this service (aud)")
	}
	return refuse(ReasonMalformed, err, "the token was refused")
}

// missingClaim names the first required claim absent from mc.
func (v *Verifier) missingClaim(mc jwt.MapClaims) string {
	if _, ok := mc["exp"]; !ok && !v.opts.AllowNoExpiry {
		return "exp"
	}
	if iss, _ := mc["iss"].(string); iss == "" && v.opts.Issuer != "" {
		return "iss"
	}
	return "aud"
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
