-- The JWKS spec's script (spec/e2e/jwks_spec.lua): tokens verified against
-- the key set at $JWKS_URL, which the gateway fetches and refreshes.
local tinysse = require "tinysse"

local keys = tinysse.jwks(os.getenv("JWKS_URL"), { refresh = 2 })

return {
  validate_token = function(token)
    local claims, why = tinysse.jwt_verify(token, keys, {
      algs = { "RS256", "ES256", "EdDSA" }, iss = "https://idp.example", aud = "tinysse" })
    if not claims then return nil, why end
    return claims.sub, "member", claims.exp
  end,
}
