'use strict';
// Performs one operation with Smartcar's official Node SDK and prints exactly
// one JSON line on stdout:
//
//   {"ok":true,"result":...}                on success
//   {"ok":false,"error":{"name":...,...}}    when the SDK (or fetch) throws
//
// Both exit 0. A non-zero exit means this script itself is broken or was
// called wrongly (unknown operation, missing variable). It is driven by
// ../../conformance_test.go against smartcarsim.Simulator.
//
// The SDK reads its origins from the environment itself; all three are
// required here, so that a run can never reach Smartcar's real servers:
//   SMARTCAR_AUTH_ORIGIN    token endpoints: POST {origin}/oauth/token (v2),
//                           {origin}/oauth2/token (v3, by plain fetch: the
//                           SDK has no client_credentials call)
//   SMARTCAR_API_ORIGIN     API v2.0: {origin}/v2.0/vehicles/...
//   SMARTCAR_API_V3_ORIGIN  API v3: {origin}/v3/vehicles/...
// Inputs: SMARTCAR_CLIENT_ID, SMARTCAR_CLIENT_SECRET, SMARTCAR_REFRESH_TOKEN
// (refresh), SMARTCAR_ACCESS_TOKEN (the other v2 operations),
// SMARTCAR_VEHICLE_ID (attributes, door-*, tesla-charge and every v3
// operation), SMARTCAR_VEHICLE_MAKE (door-*, the lower-case make path
// segment; default tesla); for v3: SMARTCAR_API_CLIENT_ID and
// SMARTCAR_API_CLIENT_SECRET (app-token), SMARTCAR_APP_TOKEN (the other v3
// operations), SMARTCAR_SIGNAL_CODE (get-signal), SMARTCAR_V3_METHOD and
// SMARTCAR_V3_PATH (v3-request; the path is relative to
// {origin}/v3/vehicles/{id}/), SMARTCAR_USER_ID (v3-request: sent as
// sc-user-id when set).

const smartcar = require('smartcar');

function need(name) {
  const v = process.env[name];
  if (!v) {
    process.stderr.write(`check.js: ${name} is not set\n`);
    process.exit(2);
  }
  return v;
}

function vehicle() {
  return new smartcar.Vehicle(need('SMARTCAR_VEHICLE_ID'),
      need('SMARTCAR_ACCESS_TOKEN'));
}

// v3Vehicle is a Vehicle on API v3. Its constructor takes no headers, so
// getSignals and getSignal cannot send sc-user-id; only request() can.
function v3Vehicle() {
  return new smartcar.Vehicle(need('SMARTCAR_VEHICLE_ID'),
      need('SMARTCAR_APP_TOKEN'), {version: '3'});
}

// appToken is the v3 client_credentials grant, by plain fetch.
async function appToken() {
  const res = await fetch(`${need('SMARTCAR_AUTH_ORIGIN')}/oauth2/token`, {
    method: 'POST',
    headers: {'Content-Type': 'application/x-www-form-urlencoded'},
    body: new URLSearchParams({
      grant_type: 'client_credentials', // eslint-disable-line camelcase
      client_id: need('SMARTCAR_API_CLIENT_ID'), // eslint-disable-line camelcase
      client_secret: need('SMARTCAR_API_CLIENT_SECRET'), // eslint-disable-line camelcase
    }),
  });
  return {
    status: res.status,
    requestId: res.headers.get('sc-request-id'),
    cacheControl: res.headers.get('cache-control'),
    body: await res.json(),
  };
}

function v3Request() {
  const headers = {};
  if (process.env.SMARTCAR_USER_ID) {
    headers['sc-user-id'] = process.env.SMARTCAR_USER_ID;
  }
  return v3Vehicle().request(need('SMARTCAR_V3_METHOD'),
      need('SMARTCAR_V3_PATH'), null, headers, '3');
}

function door(action) {
  const make = process.env.SMARTCAR_VEHICLE_MAKE || 'tesla';
  return () => vehicle().request('POST', `${make}/charge/charge_port_door`,
      {action});
}

const ops = {
  refresh: () => new smartcar.AuthClient({
    clientId: need('SMARTCAR_CLIENT_ID'),
    clientSecret: need('SMARTCAR_CLIENT_SECRET'),
  }).exchangeRefreshToken(need('SMARTCAR_REFRESH_TOKEN')),
  vehicles: () => smartcar.getVehicles(need('SMARTCAR_ACCESS_TOKEN')),
  attributes: () => vehicle().attributes(),
  'door-open': door('OPEN'),
  'door-close': door('CLOSE'),
  'tesla-charge': () => vehicle().request('GET', 'tesla/charge'),
  'app-token': appToken,
  'get-vehicle': () => smartcar.getVehicle(need('SMARTCAR_APP_TOKEN'),
      need('SMARTCAR_VEHICLE_ID')),
  'get-signals': () => v3Vehicle().getSignals(),
  'get-signal': () => v3Vehicle().getSignal(need('SMARTCAR_SIGNAL_CODE')),
  'v3-request': v3Request,
};

// errorFields copies what the error object carries: SmartcarError sets its
// fields (type, code, statusCode, requestId, retryAfter, resolution, ...) as
// own properties; name and message are added explicitly.
function errorFields(err) {
  const out = {
    name: err && err.name,
    message: err && err.message,
    isSmartcarError: err instanceof smartcar.SmartcarError,
  };
  if (err && typeof err === 'object') {
    Object.assign(out, err);
    if (err.cause) {
      out.cause = String(err.cause);
    }
  }
  return out;
}

async function main() {
  const name = process.argv[2];
  const op = Object.hasOwn(ops, name) ? ops[name] : undefined;
  if (process.argv.length !== 3 || !op) {
    process.stderr.write(
        `usage: node check.js <${Object.keys(ops).join('|')}>\n`);
    process.exit(2);
  }
  // Never fall back to the SDK's defaults, Smartcar's real servers.
  need('SMARTCAR_API_ORIGIN');
  need('SMARTCAR_API_V3_ORIGIN');
  need('SMARTCAR_AUTH_ORIGIN');
  let line;
  try {
    line = {ok: true, result: await op()};
  } catch (err) {
    line = {ok: false, error: errorFields(err)};
  }
  process.stdout.write(JSON.stringify(line) + '\n');
}

main().catch((err) => {
  process.stderr.write(`check.js: ${err && err.stack || err}\n`);
  process.exit(1);
});
