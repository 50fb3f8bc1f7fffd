#!/usr/bin/env node
/**
 * refundwatch's local OpenID Connect provider, for the test suite and `make demo` (loopback only).
 *
 * A thin configuration of `oidc-provider` (pinned in package.json): one confidential web client
 * (authorization code + PKCE S256, RS256 ID tokens, RP-initiated logout), machine clients for
 * client credentials that receive RFC 9068 JWT access tokens (`typ: at+jwt`) for the refundwatch
 * API, and test users with a `groups` claim. No dependency beyond oidc-provider and node itself.
 *
 * Start:  node idp/provider.mjs [config.json]        (or IDP_CONFIG=config.json node idp/provider.mjs)
 * Ready:  prints exactly one line `idp listening on http://HOST:PORT` to stdout (port 0 = any free
 *         port; read the real one from that line). SIGTERM / SIGINT close it and exit 0.
 *
 * Configuration: built-in defaults, then the JSON file (all keys optional), then environment variables.
 *   JSON key                 env variable                   default
 *   host                     IDP_HOST                       127.0.0.1
 *   port                     IDP_PORT                       9400 (0 = any free port)
 *   issuer                   IDP_ISSUER                     http://HOST:PORT (the port actually bound)
 *   rpBaseUrl                IDP_RP_BASE_URL                http://127.0.0.1:8000 (refundwatch's base URL)
 *   audience                 IDP_API_AUDIENCE               urn:refundwatch:api
 *   apiScopes                IDP_API_SCOPES (space/comma)   refunds:read refunds:write payments:write webhooks:write
 *   ttl.accessToken          IDP_ACCESS_TOKEN_TTL (s)       600 (also the client-credentials token TTL)
 *   ttl.clientCredentials    IDP_CLIENT_CREDENTIALS_TTL (s) = ttl.accessToken
 *   ttl.idToken              IDP_ID_TOKEN_TTL (s)           3600
 *   ttl.session / ttl.grant  IDP_SESSION_TTL (s)            28800 / = session
 *   ttl.interaction          -                              900
 *   ttl.authorizationCode    -                              60
 *   testHooks                IDP_TEST_HOOKS=1               false (see "Test hooks" below)
 *   autoConfirmLogout        IDP_AUTO_CONFIRM_LOGOUT=1      false (see "Logout" below)
 *   loginHints               IDP_LOGIN_HINTS=0|1            true (list the demo usernames on the login page)
 *   logRequests              IDP_LOG_REQUESTS=1             false (one stderr line per request)
 *   webClients               -                              [DEFAULT_WEB_CLIENT] (see below)
 *     .client_id / .client_secret          IDP_WEB_CLIENT_ID / IDP_WEB_CLIENT_SECRET  (first web client)
 *     .redirect_uris                       IDP_REDIRECT_URIS (comma)     [rpBaseUrl + /auth/callback]
 *     .post_logout_redirect_uris           IDP_POST_LOGOUT_REDIRECT_URIS (comma)
 *                                          [rpBaseUrl + /, rpBaseUrl + /auth/login]
 *   machineClients           -                              refundwatch-machine (all API scopes) and
 *                                                           refundwatch-reader (refunds:read)
 *     .client_id / .client_secret          IDP_MACHINE_CLIENT_ID / IDP_MACHINE_CLIENT_SECRET (first one)
 *     .scope                               space-separated API scopes this client may request
 *   extraClients             -                              []  raw oidc-provider client metadata
 *   users                    -                              DEFAULT_USERS (replaces the defaults)
 *   extraUsers               -                              []  (added to `users`; same username replaces)
 *   claims                   -                              merged over the claims config below
 *
 * Web clients: confidential, client_secret_basic or client_secret_post (oidc-provider accepts either
 * for a client registered with one of them), response_type code, PKCE S256 required, ID token RS256.
 * They may use the refresh-token grant, and get a refresh token at every sign-in (as Keycloak does;
 * oidc-provider would otherwise want `offline_access` with `prompt=consent`), tied to the provider
 * session unless `offline_access` was granted.
 * Scopes `openid profile email groups`; the ID token itself carries the scope claims (groups included).
 * Consent is granted automatically (all clients are first party): no consent screen.
 *
 * Machine clients: grant client_credentials only. A token request without `resource` is given the
 * API audience (resourceIndicators.defaultResource), so the access token is a JWT (RFC 9068,
 * header typ at+jwt, RS256) with aud = audience, client_id, sub = client_id, jti, iat, exp, and a
 * `scope` claim holding the requested scopes (ask for them with `scope=...`; a client may only ask
 * for the scopes of its own `scope` metadata, otherwise invalid_scope). No `scope` param: no scope claim.
 *
 * Users (JSON): {username, password, sub?, name?, email?, groups?, claims?}. `sub` defaults to a
 * stable opaque id derived from the username; a user without `groups` gets no groups claim at all;
 * `claims` adds arbitrary claims (declare new claim names under a scope in `claims` to release them).
 *
 * Login page: GET /interaction/<uid> renders a plain HTML form (POST /interaction/<uid>/login with
 * fields `username` and `password`, button "Sign in"; wrong credentials answer 401 with the form
 * again; `login_hint` pre-fills the username). GET /interaction/<uid>/abort ends the request with
 * error=access_denied at the client's redirect_uri.
 *
 * Logout: end_session_endpoint (/session/end) shows a form with a "Yes, sign me out" button
 * (name=logout value=yes) posting to /session/end/confirm; confirming redirects to the registered
 * post_logout_redirect_uri (with state). With autoConfirmLogout the page also carries an inline
 * script that submits it at once (the IdP's own page; refundwatch's CSP is not involved).
 * Without an IdP session, oidc-provider auto-submits the confirmation itself.
 *
 * Cookies are named idp_session / idp_interaction / idp_interaction_resume (cookies ignore ports,
 * so they must not collide with refundwatch's on 127.0.0.1) and are not `Secure` over http.
 *
 * Test hooks (only when testHooks / IDP_TEST_HOOKS=1), JSON in and out:
 *   POST /__test/sign   {"claims": {...}, "header": {...}?, "key": "provider"|"unknown"|"none"|"hs256",
 *                        "secret": "..."?}
 *       Signs `claims` verbatim (no defaults are added). key=provider: RS256 with the provider's
 *       real signing key (kid in JWKS); unknown: RS256 with a fresh key that is not in the JWKS
 *       (kid "unknown-..."); none: alg "none", empty signature; hs256: HMAC-SHA256 with `secret`
 *       (default: the provider's public key in PEM, i.e. an algorithm-confusion token). `header`
 *       is merged over {alg, kid} (a null value removes a field), so a real signature can carry a
 *       wrong kid, or a header can lie about alg. Answers {"token", "header", "claims"}.
 *   POST /__test/users  {"username", "password", "groups"?, ...}  adds or replaces a user; answers it
 *                       without the password.
 *   POST /__test/users/<username>  {"groups"?: [...] | null, "disabled"?: bool, ...}  changes a
 *                       running user in place (null removes a field; groups null: no groups claim);
 *                       answers it without the password. The next refresh-token grant or userinfo
 *                       call sees the change; a disabled user cannot sign in and every refresh token
 *                       and access token of theirs stops working (invalid_grant / 401).
 *   GET  /__test/users  the users (without passwords).
 *   POST /__test/clients {"redirect_uris": [...], "post_logout_redirect_uris"?, "client_id"?, "client_secret"?}
 *                       registers (or replaces) another web client with the web-client defaults, so one
 *                       running IdP can serve several refundwatch servers on different ports (redirect
 *                       URIs must match exactly). client_id / client_secret are generated when absent;
 *                       answers the full client metadata, secret included. Configured clients: 409.
 */

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

// ------------------------------------------------------------------------------------ configuration

const DEFAULT_PASSWORD = 'password';

const DEFAULT_USERS = [
  { username: 'alice-viewer', name: 'Alice Viewer', groups: ['refundwatch-viewers'] },
  { username: 'ivan-initiator', name: 'Ivan Initiator', groups: ['refundwatch-initiators'] },
  { username: 'amy-approver', name: 'Amy Approver', groups: ['refundwatch-approvers'] },
  { username: 'bob-approver', name: 'Bob Approver', groups: ['refundwatch-approvers'] },
  { username: 'ada-admin', name: 'Ada Admin', groups: ['refundwatch-admins'] },
  { username: 'nina-nogroups', name: 'Nina Nogroups' },
  { username: 'oscar-outsider', name: 'Oscar Outsider', groups: ['marketing'] },
].map((user) => ({ ...user, password: DEFAULT_PASSWORD }));

const DEFAULT_CLAIMS = {
  openid: ['sub'],
  profile: ['name', 'preferred_username', 'given_name', 'family_name', 'updated_at'],
  email: ['email', 'email_verified'],
  groups: ['groups'],
};

function splitList(value) {
  return String(value).split(/[\s,]+/).filter(Boolean);
}

function envFlag(name) {
  const value = process.env[name];
  if (value === undefined || value === '') return undefined;
  return ['1', 'true', 'yes', 'on'].includes(value.toLowerCase());
}

function envInt(name) {
  const value = process.env[name];
  if (value === undefined || value === '') return undefined;
  const parsed = Number.parseInt(value, 10);
  if (!Number.isInteger(parsed) || parsed < 0) throw new Error(`${name} must be a non-negative integer`);
  return parsed;
}

function loadConfig() {
  const path = process.argv[2] || process.env.IDP_CONFIG;
  let file = {};
  if (path) {
    try {
      file = JSON.parse(fs.readFileSync(path, 'utf8'));
    } catch (err) {
      throw new Error(`idp: cannot read config file ${path}: ${err.message}`);
    }
  }
  const env = process.env;
  const ttlIn = file.ttl || {};

  const config = {
    host: env.IDP_HOST || file.host || '127.0.0.1',
    port: envInt('IDP_PORT') ?? file.port ?? 9400,
    issuer: env.IDP_ISSUER || file.issuer || undefined,
    rpBaseUrl: (env.IDP_RP_BASE_URL || file.rpBaseUrl || 'http://127.0.0.1:8000').replace(/\/+$/, ''),
    audience: env.IDP_API_AUDIENCE || file.audience || 'urn:refundwatch:api',
    apiScopes: env.IDP_API_SCOPES ? splitList(env.IDP_API_SCOPES)
      : (file.apiScopes || ['refunds:read', 'refunds:write', 'payments:write', 'webhooks:write']),
    testHooks: envFlag('IDP_TEST_HOOKS') ?? Boolean(file.testHooks),
    autoConfirmLogout: envFlag('IDP_AUTO_CONFIRM_LOGOUT') ?? Boolean(file.autoConfirmLogout),
    loginHints: envFlag('IDP_LOGIN_HINTS') ?? (file.loginHints ?? true),
    logRequests: envFlag('IDP_LOG_REQUESTS') ?? Boolean(file.logRequests),
    claims: { ...DEFAULT_CLAIMS, ...(file.claims || {}) },
    extraClients: file.extraClients || [],
  };

  const accessToken = envInt('IDP_ACCESS_TOKEN_TTL') ?? ttlIn.accessToken ?? 600;
  const session = envInt('IDP_SESSION_TTL') ?? ttlIn.session ?? 8 * 3600;
  config.ttl = {
    accessToken,
    clientCredentials: envInt('IDP_CLIENT_CREDENTIALS_TTL') ?? ttlIn.clientCredentials ?? accessToken,
    idToken: envInt('IDP_ID_TOKEN_TTL') ?? ttlIn.idToken ?? 3600,
    session,
    grant: ttlIn.grant ?? session,
    interaction: ttlIn.interaction ?? 900,
    authorizationCode: ttlIn.authorizationCode ?? 60,
  };

  const web = (file.webClients || [{}]).map((client) => ({ ...client }));
  if (web.length) {
    web[0].client_id = env.IDP_WEB_CLIENT_ID || web[0].client_id;
    web[0].client_secret = env.IDP_WEB_CLIENT_SECRET || web[0].client_secret;
    if (env.IDP_REDIRECT_URIS) web[0].redirect_uris = splitList(env.IDP_REDIRECT_URIS);
    if (env.IDP_POST_LOGOUT_REDIRECT_URIS) {
      web[0].post_logout_redirect_uris = splitList(env.IDP_POST_LOGOUT_REDIRECT_URIS);
    }
  }
  config.webClients = web.map((client, index) => webClientMetadata(config, {
    ...client,
    client_id: client.client_id || (index === 0 ? 'refundwatch-web' : `refundwatch-web-${index + 1}`),
    client_secret: client.client_secret || (index === 0 ? 'refundwatch-web-secret' : `refundwatch-web-${index + 1}-secret`),
  }));

  const machines = (file.machineClients || [
    { client_id: 'refundwatch-machine', client_secret: 'refundwatch-machine-secret', scope: config.apiScopes.join(' ') },
    { client_id: 'refundwatch-reader', client_secret: 'refundwatch-reader-secret', scope: 'refunds:read' },
  ]).map((client) => ({ ...client }));
  if (machines.length) {
    machines[0].client_id = env.IDP_MACHINE_CLIENT_ID || machines[0].client_id;
    machines[0].client_secret = env.IDP_MACHINE_CLIENT_SECRET || machines[0].client_secret;
  }
  config.machineClients = machines.map((client) => ({
    token_endpoint_auth_method: 'client_secret_basic',
    ...client,
    scope: client.scope || config.apiScopes.join(' '),
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
  }));
  for (const client of [...config.webClients, ...config.machineClients]) {
    if (!client.client_id || !client.client_secret) throw new Error('idp: every client needs client_id and client_secret');
  }

  config.users = new Map();
  for (const user of [...(file.users || DEFAULT_USERS), ...(file.extraUsers || [])]) {
    addUser(config.users, user);
  }
  return config;
}

/** A confidential authorization-code client's metadata, with refundwatch's defaults filled in. */
function webClientMetadata(config, client) {
  return {
    client_name: 'refundwatch',
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
    ...client,
    redirect_uris: client.redirect_uris || [`${config.rpBaseUrl}/auth/callback`],
    post_logout_redirect_uris: client.post_logout_redirect_uris
      || [`${config.rpBaseUrl}/`, `${config.rpBaseUrl}/auth/login`],
    grant_types: client.grant_types || ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    scope: client.scope || ['openid', ...Object.keys(config.claims).filter((s) => s !== 'openid')].join(' '),
  };
}

function normaliseUser(user) {
  if (!user || typeof user.username !== 'string' || !user.username) throw new Error('a user needs a username');
  if (typeof user.password !== 'string' || !user.password) throw new Error(`user ${user.username} needs a password`);
  if (user.groups !== undefined && !Array.isArray(user.groups)) throw new Error(`user ${user.username}: groups must be a list`);
  const sub = user.sub || `u-${crypto.hash('sha256', `refundwatch-idp:${user.username}`, 'hex').slice(0, 24)}`;
  return {
    ...user,
    sub,
    name: user.name || user.username,
    email: user.email || `${user.username}@example.test`,
  };
}

function addUser(users, raw) {
  const user = normaliseUser(raw);
  for (const [key, existing] of users) {
    if (existing.username === user.username || existing.sub === user.sub) users.delete(key);
  }
  users.set(user.sub, user);
  return user;
}

function updateUser(users, username, changes) {
  const user = [...users.values()].find((candidate) => candidate.username === username);
  if (!user) throw Object.assign(new Error(`no user ${username}`), { status: 404 });
  const changed = { ...user };
  for (const [key, value] of Object.entries(changes || {})) {
    if (['username', 'sub'].includes(key)) throw new Error(`${key} cannot change`);
    if (value === null) delete changed[key];
    else changed[key] = value;
  }
  return addUser(users, changed);
}

function publicUser({ password, ...rest }) {
  return rest;
}

const config = loadConfig();

// ------------------------------------------------------------------------------------------- keys

function b64url(input) {
  return Buffer.from(input).toString('base64url');
}

function newRsaKey(kid) {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { kid, privateKey, publicKey };
}

const signingKey = newRsaKey(`rw-idp-${crypto.randomBytes(6).toString('hex')}`);
let unknownKey;

const jwks = {
  keys: [{ ...signingKey.privateKey.export({ format: 'jwk' }), kid: signingKey.kid, alg: 'RS256', use: 'sig' }],
};

function signJwt({ claims, header = {}, key = 'provider', secret }) {
  if (!claims || typeof claims !== 'object' || Array.isArray(claims)) throw new Error('claims must be an object');
  let alg;
  let kid;
  let sign;
  switch (key) {
    case 'provider':
      alg = 'RS256';
      ({ kid } = signingKey);
      sign = (input) => crypto.sign('sha256', Buffer.from(input), signingKey.privateKey);
      break;
    case 'unknown':
      unknownKey ||= newRsaKey(`unknown-${crypto.randomBytes(6).toString('hex')}`);
      alg = 'RS256';
      ({ kid } = unknownKey);
      sign = (input) => crypto.sign('sha256', Buffer.from(input), unknownKey.privateKey);
      break;
    case 'none':
      alg = 'none';
      sign = () => Buffer.alloc(0);
      break;
    case 'hs256': {
      alg = 'HS256';
      const hmacKey = secret ?? signingKey.publicKey.export({ format: 'pem', type: 'spki' });
      sign = (input) => crypto.createHmac('sha256', hmacKey).update(input).digest();
      break;
    }
    default:
      throw new Error(`unknown key ${JSON.stringify(key)} (provider, unknown, none, hs256)`);
  }
  const fullHeader = { alg, ...(kid ? { kid } : {}), ...header };
  for (const [name, value] of Object.entries(fullHeader)) {
    if (value === null) delete fullHeader[name];
  }
  const input = `${b64url(JSON.stringify(fullHeader))}.${b64url(JSON.stringify(claims))}`;
  return { token: `${input}.${b64url(sign(input))}`, header: fullHeader, claims };
}

// ------------------------------------------------------------------------------------------ pages

function esc(value) {
  return String(value ?? '')
    .replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

const STYLE = 'body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0;padding:3rem 1rem}'
  + 'main{max-width:22rem;margin:0 auto;background:#fff;padding:1.5rem 2rem;border-radius:6px;'
  + 'box-shadow:0 1px 3px rgba(0,0,0,.15)}h1{font-size:1.3rem;margin-top:0}label{display:block;'
  + 'margin:.8rem 0 .2rem}input{width:100%;box-sizing:border-box;padding:.45rem;font-size:1rem}'
  + 'button{margin-top:1rem;width:100%;padding:.55rem;font-size:1rem;cursor:pointer}'
  + '.error{color:#b00020}.hint{color:#555;font-size:.85rem}code{font-size:.85rem}';

function page(title, body, { script } = {}) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} · refundwatch test IdP</title>
<style>${STYLE}</style>
${script ? `<script>${script}</script>` : ''}
</head>
<body>
<main>
<h1>${esc(title)}</h1>
${body}
</main>
</body>
</html>`;
}

function loginPage({ uid, clientName, username = '', error }) {
  const hints = config.loginHints
    ? `<details class="hint"><summary>Test users</summary><ul>${[...config.users.values()].map((u) => (
      `<li><code>${esc(u.username)}</code> ${esc((u.groups || ['(no groups)']).join(', '))}</li>`
    )).join('')}</ul><p>Password of the built-in users: <code>${DEFAULT_PASSWORD}</code></p></details>`
    : '';
  return page('Sign in', `
<p>to continue to <strong>${esc(clientName)}</strong></p>
${error ? `<p class="error" role="alert">${esc(error)}</p>` : ''}
<form id="login" method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
<label for="username">Username</label>
<input id="username" name="username" value="${esc(username)}" autocomplete="username" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
<p><a href="/interaction/${esc(uid)}/abort">Cancel</a></p>
${hints}`);
}

async function logoutSource(ctx, form) {
  ctx.type = 'html';
  if (config.autoConfirmLogout) {
    const autoForm = form.replace('</form>', '<input type="hidden" name="logout" value="yes"/></form>');
    ctx.body = page('Signing out', `${autoForm}
<button type="submit" form="op.logoutForm">Yes, sign me out</button>`, {
      script: "document.addEventListener('DOMContentLoaded',function(){document.forms[0].submit()});",
    });
    return;
  }
  ctx.body = page('Sign out', `<p>Do you want to sign out of the refundwatch test IdP?</p>
${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes" autofocus>Yes, sign me out</button>
<button type="submit" form="op.logoutForm">No, stay signed in</button>`);
}

async function postLogoutSuccessSource(ctx) {
  ctx.type = 'html';
  ctx.body = page('Signed out', '<p>You are signed out.</p>');
}

async function renderError(ctx, out) {
  ctx.type = 'html';
  ctx.body = page('Error', Object.entries(out)
    .map(([key, value]) => `<p><strong>${esc(key)}</strong>: <span class="error">${esc(value)}</span></p>`)
    .join(''));
}

// --------------------------------------------------------------------------------------- provider

async function findAccount(_ctx, sub) {
  const user = config.users.get(sub);
  if (!user || user.disabled) return undefined;
  return {
    accountId: user.sub,
    async claims() {
      const [givenName, ...rest] = user.name.split(' ');
      return {
        sub: user.sub,
        name: user.name,
        preferred_username: user.username,
        given_name: givenName,
        family_name: rest.join(' ') || undefined,
        email: user.email,
        email_verified: true,
        ...(user.groups !== undefined ? { groups: [...user.groups] } : {}),
        ...(user.claims || {}),
      };
    },
  };
}

/** All clients are first party: grant whatever the authorization request asks for, no consent screen. */
async function loadExistingGrant(ctx) {
  const { oidc } = ctx;
  const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
  let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
  if (!grant || grant.accountId !== oidc.session.accountId) {
    grant = new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
  }
  const oidcScopes = [...oidc.requestParamOIDCScopes];
  if (oidcScopes.length) grant.addOIDCScope(oidcScopes.join(' '));
  const claims = [...oidc.requestParamClaims];
  if (claims.length) grant.addOIDCClaims(claims);
  for (const [indicator, resourceServer] of Object.entries(oidc.resourceServers)) {
    const scopes = [...oidc.requestParamScopes].filter((scope) => resourceServer.scopes.has(scope));
    if (scopes.length) grant.addResourceScope(indicator, scopes.join(' '));
  }
  await grant.save();
  return grant;
}

const machineClientIds = new Set(config.machineClients.map((client) => client.client_id));
const staticClientIds = new Set(
  [...config.webClients, ...config.machineClients, ...config.extraClients].map((client) => client.client_id),
);

const provider = (issuer) => new Provider(issuer, {
  clients: [...config.webClients, ...config.machineClients, ...config.extraClients],
  jwks,
  findAccount,
  loadExistingGrant,
  claims: config.claims,
  scopes: ['openid', 'offline_access', ...config.apiScopes],
  conformIdTokenClaims: false, // the ID token carries the scope claims (groups) itself
  clientBasedCORS: () => false,
  cookies: {
    names: { session: 'idp_session', interaction: 'idp_interaction', resume: 'idp_interaction_resume' },
    keys: [crypto.randomBytes(32).toString('base64url')],
  },
  responseTypes: ['code'],
  pkce: { required: () => true },
  // Every web client that may refresh gets a refresh token (see "Web clients" above).
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      async defaultResource(_ctx, client, oneOf) {
        if (oneOf) return oneOf;
        return machineClientIds.has(client?.clientId) ? config.audience : undefined;
      },
      useGrantedResource: async () => false,
      async getResourceServerInfo(_ctx, resourceIndicator) {
        if (resourceIndicator !== config.audience) throw new errors.InvalidTarget();
        return {
          scope: config.apiScopes.join(' '),
          audience: config.audience,
          accessTokenTTL: config.ttl.clientCredentials,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  ttl: {
    AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL || config.ttl.accessToken,
    ClientCredentials: () => config.ttl.clientCredentials,
    IdToken: () => config.ttl.idToken,
    AuthorizationCode: () => config.ttl.authorizationCode,
    Interaction: () => config.ttl.interaction,
    Session: () => config.ttl.session,
    Grant: () => config.ttl.grant,
    RefreshToken: () => config.ttl.session,
  },
  renderError,
});

// ---------------------------------------------------------------------------------- extra routes

const MAX_BODY = 64 * 1024;

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY) throw Object.assign(new Error('request body too large'), { status: 413 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function timingSafeEqualText(a, b) {
  const left = crypto.hash('sha256', String(a), 'buffer');
  const right = crypto.hash('sha256', String(b), 'buffer');
  return crypto.timingSafeEqual(left, right);
}

function noStore(ctx) {
  ctx.set('cache-control', 'no-store');
}

async function autoConsent(oidcProvider, ctx, details) {
  const { prompt: { details: missing }, grantId, session, params } = details;
  const grant = grantId ? await oidcProvider.Grant.find(grantId)
    : new oidcProvider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const result = { consent: { grantId: await grant.save() } };
  const to = await oidcProvider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
  ctx.status = 303;
  ctx.redirect(to);
}

function interactionRoutes(oidcProvider) {
  return async function interactions(ctx, next) {
    const match = /^\/interaction\/([\w-]+)(?:\/(login|abort))?\/?$/.exec(ctx.path);
    if (!match) return next();
    const [, uid, action] = match;
    noStore(ctx);
    let details;
    try {
      details = await oidcProvider.interactionDetails(ctx.req, ctx.res);
    } catch (err) {
      ctx.status = 400;
      await renderError(ctx, { error: 'invalid_request', error_description: `sign-in session not found or expired (${err.message}); start again from the application` });
      return undefined;
    }
    if (details.uid !== uid) {
      ctx.status = 400;
      await renderError(ctx, { error: 'invalid_request', error_description: 'interaction does not match this browser session' });
      return undefined;
    }
    const client = await oidcProvider.Client.find(details.params.client_id);
    const clientName = client?.clientName || details.params.client_id;

    if (action === 'abort') {
      const to = await oidcProvider.interactionResult(ctx.req, ctx.res, {
        error: 'access_denied', error_description: 'End-User aborted interaction',
      }, { mergeWithLastSubmission: false });
      ctx.status = 303;
      return ctx.redirect(to);
    }

    if (action === 'login') {
      if (ctx.method !== 'POST') ctx.throw(405);
      if (details.prompt.name !== 'login') ctx.throw(400, 'no sign-in pending for this interaction');
      const form = new URLSearchParams(await readBody(ctx.req));
      const username = form.get('username') || '';
      const password = form.get('password') || '';
      const user = [...config.users.values()].find((candidate) => candidate.username === username);
      if (!user || user.disabled || !timingSafeEqualText(user.password, password)) {
        ctx.status = 401;
        ctx.type = 'html';
        ctx.body = loginPage({ uid, clientName, username, error: 'Invalid username or password.' });
        return undefined;
      }
      const to = await oidcProvider.interactionResult(ctx.req, ctx.res, {
        login: { accountId: user.sub, remember: false },
      }, { mergeWithLastSubmission: false });
      ctx.status = 303;
      return ctx.redirect(to);
    }

    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') ctx.throw(405);
    switch (details.prompt.name) {
      case 'login':
        ctx.type = 'html';
        ctx.body = loginPage({ uid, clientName, username: details.params.login_hint || '' });
        return undefined;
      case 'consent':
        return autoConsent(oidcProvider, ctx, details);
      default:
        ctx.status = 501;
        return renderError(ctx, { error: 'not_implemented', error_description: `prompt ${details.prompt.name}` });
    }
  };
}

async function registerWebClient(oidcProvider, body) {
  if (!Array.isArray(body.redirect_uris) || !body.redirect_uris.length) {
    throw new Error('redirect_uris (a non-empty list) is required');
  }
  const metadata = webClientMetadata(config, {
    ...body,
    client_id: body.client_id || `refundwatch-web-${crypto.randomBytes(6).toString('hex')}`,
    client_secret: body.client_secret || crypto.randomBytes(24).toString('base64url'),
  });
  if (staticClientIds.has(metadata.client_id)) {
    throw Object.assign(new Error(`${metadata.client_id} is a configured client and cannot be replaced`), { status: 409 });
  }
  await oidcProvider.Client.validate(metadata);
  await oidcProvider.Client.adapter.upsert(metadata.client_id, metadata);
  return metadata;
}

function testHookRoutes(oidcProvider) {
  return async function testHooks(ctx, next) {
    if (!ctx.path.startsWith('/__test/')) return next();
    noStore(ctx);
    try {
      if (ctx.path === '/__test/sign' && ctx.method === 'POST') {
        ctx.body = signJwt(JSON.parse(await readBody(ctx.req) || '{}'));
      } else if (ctx.path === '/__test/users' && ctx.method === 'POST') {
        ctx.body = publicUser(addUser(config.users, JSON.parse(await readBody(ctx.req) || '{}')));
      } else if (ctx.path.startsWith('/__test/users/') && ctx.method === 'POST') {
        const username = decodeURIComponent(ctx.path.slice('/__test/users/'.length));
        ctx.body = publicUser(updateUser(config.users, username, JSON.parse(await readBody(ctx.req) || '{}')));
      } else if (ctx.path === '/__test/clients' && ctx.method === 'POST') {
        ctx.body = await registerWebClient(oidcProvider, JSON.parse(await readBody(ctx.req) || '{}'));
      } else if (ctx.path === '/__test/users' && ctx.method === 'GET') {
        ctx.body = [...config.users.values()].map(publicUser);
      } else {
        ctx.status = 404;
        ctx.body = { error: 'not_found' };
      }
    } catch (err) {
      ctx.status = err.status || 400;
      ctx.body = { error: 'bad_request', error_description: err.message };
    }
    return undefined;
  };
}

function requestLog() {
  return async function log(ctx, next) {
    const started = Date.now();
    try {
      await next();
    } finally {
      console.error(`idp ${ctx.method} ${ctx.path} -> ${ctx.status} (${Date.now() - started} ms)`);
    }
  };
}

// ------------------------------------------------------------------------------------------ start

const server = http.createServer();
let handler = (_req, res) => {
  res.statusCode = 503;
  res.end('starting');
};
server.on('request', (req, res) => handler(req, res));

server.listen(config.port, config.host, () => {
  const { port } = server.address();
  const hostPart = config.host.includes(':') ? `[${config.host}]` : config.host;
  const listening = `http://${hostPart}:${port}`;
  const oidc = provider(config.issuer || listening);
  oidc.proxy = false;
  if (config.logRequests) oidc.use(requestLog());
  if (config.testHooks) oidc.use(testHookRoutes(oidc));
  oidc.use(interactionRoutes(oidc));
  oidc.on('server_error', (_ctx, err) => console.error('idp server_error:', err));
  handler = oidc.callback();
  console.log(`idp listening on ${listening}`);
});

server.on('error', (err) => {
  console.error(`idp: cannot listen on ${config.host}:${config.port}: ${err.message}`);
  process.exit(1);
});

let stopping = false;
function stop(signal) {
  if (stopping) return;
  stopping = true;
  console.error(`idp: ${signal}, shutting down`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
