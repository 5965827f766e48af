#!/usr/bin/env node
// A stock Node.js gRPC client for lrod: @grpc/grpc-js and @grpc/proto-loader
// load the repository's protos as they are, with no lrod-specific code.
// It lists the job types, submits `examples.sleep`, streams WatchOperation to
// the end, reads the result back through google.longrunning.Operations
// (GetOperation and WaitOperation), checks request_id idempotency, and checks
// that an unknown operation answers NOT_FOUND with a google.rpc.Status whose
// ErrorInfo names the reason.
//
// Usage: node client.js HOST:PORT  (LROD_TLS_CA=ca.pem LROD_TOKEN=... for TLS
// and a bearer token)
// Prints one JSON line per event on stdout; exits 0 when every check passes,
// 1 with a message on stderr otherwise.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const PROTO_DIR = path.resolve(__dirname, '..', '..', 'proto');
const PROTOBUFJS_DIR = path.dirname(require.resolve('protobufjs/package.json'));
const ENTRY_FILES = ['lrod/v1/job_service.proto', 'lrod/examples/v1/examples.proto'];
// The Any payloads: job_service.proto names lrod.v1.OperationMetadata only in
// operation_info, so its file is loaded here; google.rpc.Status comes in
// through operations.proto and ErrorInfo needs its own file.
const CODEC_FILES = [
  ...ENTRY_FILES,
  'lrod/v1/operation_metadata.proto',
  'google/rpc/error_details.proto',
];

const OVERALL_TIMEOUT_MS = 30_000;
const CALL_TIMEOUT_MS = 10_000;
const WATCH_TIMEOUT_MS = 25_000;

const TYPE_PREFIX = 'type.googleapis.com/';
const JOB_TYPE = 'examples.sleep';
const STEPS = 3;
const MISSING_NAME = 'operations/AAAAAAAAAAAAAAAAAAAAAA';

const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};
const TO_OBJECT = { longs: String, enums: String, defaults: true, oneofs: true };

class CheckFailed extends Error {}

function check(condition, message) {
  if (!condition) {
    throw new CheckFailed(message);
  }
}

function emit(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

function deadline(ms = CALL_TIMEOUT_MS) {
  return new Date(Date.now() + ms);
}

// The protobufjs root that encodes and decodes the messages packed in Any
// (proto-loader's package definition has descriptors, not codecs).
function loadCodecs() {
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => {
    if (path.isAbsolute(target)) {
      return target;
    }
    const own = path.join(PROTO_DIR, target);
    if (fs.existsSync(own)) {
      return own;
    }
    // google/protobuf/*: the well-known types bundled with protobufjs.
    const bundled = path.join(PROTOBUFJS_DIR, target);
    return fs.existsSync(bundled) ? bundled : target;
  };
  root.loadSync(CODEC_FILES, { keepCase: true });
  root.resolveAll();
  return {
    SleepJob: root.lookupType('lrod.examples.v1.SleepJob'),
    SleepResult: root.lookupType('lrod.examples.v1.SleepResult'),
    OperationMetadata: root.lookupType('lrod.v1.OperationMetadata'),
    Status: root.lookupType('google.rpc.Status'),
    ErrorInfo: root.lookupType('google.rpc.ErrorInfo'),
  };
}

// With LROD_TLS_CA (a PEM file) the channel speaks TLS and trusts that CA;
// with LROD_TOKEN every call carries `authorization: Bearer TOKEN`, as grpc's
// own call credentials (they need a TLS channel).
function channelCredentials() {
  const caFile = process.env.LROD_TLS_CA;
  if (!caFile) {
    return grpc.credentials.createInsecure();
  }
  const tls = grpc.credentials.createSsl(fs.readFileSync(caFile));
  const token = process.env.LROD_TOKEN;
  if (!token) {
    return tls;
  }
  const bearer = grpc.credentials.createFromMetadataGenerator((_params, callback) => {
    const metadata = new grpc.Metadata();
    metadata.add('authorization', `Bearer ${token}`);
    callback(null, metadata);
  });
  return grpc.credentials.combineChannelCredentials(tls, bearer);
}

function pack(type, value) {
  const message = type.fromObject(value);
  return {
    type_url: TYPE_PREFIX + type.fullName.replace(/^\./, ''),
    value: Buffer.from(type.encode(message).finish()),
  };
}

function unpack(type, any) {
  const expected = TYPE_PREFIX + type.fullName.replace(/^\./, '');
  check(any && any.type_url === expected, `expected an Any of ${expected}, got ${any && any.type_url}`);
  return type.toObject(type.decode(any.value), TO_OBJECT);
}

function unary(client, method, request, ms = CALL_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: deadline(ms) }, (error, response) => {
      if (error) {
        reject(error);
      } else {
        resolve(response);
      }
    });
  });
}

function watch(jobs, name, codecs) {
  return new Promise((resolve, reject) => {
    const events = [];
    let settled = false;
    const finish = (error) => {
      if (settled) return;
      settled = true;
      if (error) reject(error);
      else resolve(events);
    };
    const call = jobs.WatchOperation({ name }, { deadline: deadline(WATCH_TIMEOUT_MS) });
    call.on('data', (message) => {
      try {
        const operation = message.operation;
        check(operation && operation.name === name, `watch sent operation ${operation && operation.name}`);
        const meta = unpack(codecs.OperationMetadata, operation.metadata);
        const progress = meta.progress || {};
        const event = {
          event: 'watch',
          done: operation.done,
          state: meta.state,
          completed: Number(progress.completed || 0),
          total: Number(progress.total || 0),
        };
        emit(event);
        events.push(event);
      } catch (error) {
        call.cancel();
        finish(error);
      }
    });
    call.on('error', (error) => finish(error));
    call.on('end', () => finish(null));
  });
}

async function run(address) {
  const packageDefinition = protoLoader.loadSync(ENTRY_FILES, LOADER_OPTIONS);
  const loaded = grpc.loadPackageDefinition(packageDefinition);
  const codecs = loadCodecs();
  const credentials = channelCredentials();
  const jobs = new loaded.lrod.v1.JobService(address, credentials);
  const operations = new loaded.google.longrunning.Operations(address, credentials);
  try {
    await new Promise((resolve, reject) =>
      jobs.waitForReady(deadline(), (error) => (error ? reject(error) : resolve())),
    );

    const listed = await unary(jobs, 'ListJobTypes', {});
    const sleep = listed.job_types.find((jobType) => jobType.name === JOB_TYPE);
    check(sleep, `ListJobTypes has no ${JOB_TYPE}: ${listed.job_types.map((t) => t.name).join(', ')}`);
    check(
      sleep.input_type === 'lrod.examples.v1.SleepJob',
      `${JOB_TYPE} input type is ${sleep.input_type}`,
    );
    emit({ event: 'job_types', names: listed.job_types.map((t) => t.name) });

    const request = {
      job_type: JOB_TYPE,
      input: pack(codecs.SleepJob, { duration: { seconds: 0, nanos: 600_000_000 }, steps: STEPS }),
      request_id: crypto.randomUUID(),
      labels: { client: 'node' },
    };
    const submitted = await unary(jobs, 'Submit', request);
    check(/^operations\/\S+$/.test(submitted.name), `Submit returned name ${submitted.name}`);
    const submittedMeta = unpack(codecs.OperationMetadata, submitted.metadata);
    check(submittedMeta.job_type === JOB_TYPE, `metadata job_type is ${submittedMeta.job_type}`);
    check(submittedMeta.labels.client === 'node', 'metadata lost the label');
    emit({ event: 'submitted', name: submitted.name, state: submittedMeta.state });

    const events = await watch(jobs, submitted.name, codecs);
    check(events.length > 0, 'WatchOperation sent nothing');
    const last = events[events.length - 1];
    check(last.done === true, 'WatchOperation ended before the operation was done');
    check(last.state === 'SUCCEEDED', `WatchOperation ended in state ${last.state}`);

    const got = await unary(operations, 'GetOperation', { name: submitted.name });
    check(got.done === true, 'GetOperation: not done after the watch ended');
    check(got.result === 'response', `GetOperation: result is ${got.result}`);
    const waited = await unary(operations, 'WaitOperation', {
      name: submitted.name,
      timeout: { seconds: 5, nanos: 0 },
    });
    check(waited.done === true && waited.result === 'response', 'WaitOperation: not done with a response');
    const fromGet = unpack(codecs.SleepResult, got.response);
    const fromWait = unpack(codecs.SleepResult, waited.response);
    check(fromGet.steps_done === fromWait.steps_done, 'GetOperation and WaitOperation disagree');
    check(fromGet.steps_done === STEPS, `steps_done is ${fromGet.steps_done}, want ${STEPS}`);
    emit({ event: 'result', name: got.name, steps_done: fromGet.steps_done });

    const repeated = await unary(jobs, 'Submit', request);
    check(
      repeated.name === submitted.name,
      `repeated Submit with the same request_id returned ${repeated.name}, want ${submitted.name}`,
    );
    emit({ event: 'idempotent', name: repeated.name });

    let missing = null;
    try {
      await unary(operations, 'GetOperation', { name: MISSING_NAME });
    } catch (error) {
      missing = error;
    }
    check(missing, `GetOperation(${MISSING_NAME}) succeeded`);
    check(
      missing.code === grpc.status.NOT_FOUND,
      `GetOperation(${MISSING_NAME}): code ${missing.code} (${missing.details}), want NOT_FOUND (5)`,
    );
    const trailer = missing.metadata ? missing.metadata.get('grpc-status-details-bin') : [];
    check(trailer.length === 1, 'NOT_FOUND carries no grpc-status-details-bin trailer');
    const status = codecs.Status.decode(trailer[0]);
    check(status.code === grpc.status.NOT_FOUND, `google.rpc.Status code is ${status.code}`);
    const infoUrl = TYPE_PREFIX + 'google.rpc.ErrorInfo';
    const infoAny = status.details.find((detail) => detail.type_url === infoUrl);
    check(infoAny, 'google.rpc.Status has no ErrorInfo detail');
    const info = codecs.ErrorInfo.toObject(codecs.ErrorInfo.decode(infoAny.value), TO_OBJECT);
    check(info.reason, 'ErrorInfo has no reason');
    emit({
      event: 'not_found',
      code: status.code,
      message: status.message,
      reason: info.reason,
      domain: info.domain,
    });
  } finally {
    jobs.close();
    operations.close();
  }
}

function main() {
  const address = process.argv[2];
  if (!address) {
    process.stderr.write('usage: node client.js HOST:PORT\n');
    process.exit(1);
  }
  const watchdog = setTimeout(() => {
    process.stderr.write(`lrod node client: gave up after ${OVERALL_TIMEOUT_MS} ms\n`);
    process.exit(1);
  }, OVERALL_TIMEOUT_MS);
  run(address).then(
    () => {
      clearTimeout(watchdog);
      process.exit(0);
    },
    (error) => {
      clearTimeout(watchdog);
      const what = error instanceof CheckFailed ? 'check failed' : 'error';
      process.stderr.write(`lrod node client: ${what}: ${error && error.stack ? error.stack : error}\n`);
      process.exit(1);
    },
  );
}

main();
