'use strict';
// Performs one operation with Smartcar's official Node SDK and prints exactly
// one JSON line on stdout:
//
//   {"ok":true,"result":...}                on success
//   {"ok":false,"error":{"name":...,...}}    when the SDK (or fetch) throws
//
// Both exit 0. A non-zero exit means this script itself is broken or was
// called wrongly (unknown operation, missing variable). It is driven by
// ../../conformance_test.go against smartcar.Simulator.
//
// The SDK reads its origins from the environment itself; both are required
// here, so that a run can never reach Smartcar's real servers:
//   SMARTCAR_AUTH_ORIGIN  token endpoint: POST {origin}/oauth/token
//   SMARTCAR_API_ORIGIN   API: {origin}/v2.0/vehicles/...
// Inputs: SMARTCAR_CLIENT_ID, SMARTCAR_CLIENT_SECRET, SMARTCAR_REFRESH_TOKEN
// (refresh), SMARTCAR_ACCESS_TOKEN (all others), SMARTCAR_VEHICLE_ID
// (attributes, door-*, tesla-charge), SMARTCAR_VEHICLE_MAKE (door-*, the
// lower-case make path segment; default tesla).

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
