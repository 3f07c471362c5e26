import { errors } from '@elastic/elasticsearch';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { classify as classifyElasticsearch, classifyItem } from '../../connectors/elasticsearch/classify.ts';
import type { Failure } from '../../connectors/failure.ts';
import { classify as classifyInfluxdb } from '../../connectors/influxdb/classify.ts';
import { InfluxHttpError, InfluxTransportError } from '../../connectors/influxdb/client.ts';
import { UnrepresentableError } from '../../connectors/influxdb/line-protocol.ts';
import { classify as classifyPostgres, isRetriable as isRetriablePostgres, toSinkError as pgSinkError } from '../../connectors/postgres/classify.ts';
import { classify as classifyRedis, classifyReply, toSinkError as redisSinkError } from '../../connectors/redis/classify.ts';
import { DecodeError, SinkError } from '../../src/errors.ts';

type Row = readonly [what: string, err: unknown, retriable: boolean, code: string, status?: number | string];

/** Every row of the table classified: retriable flag, code and (when given) status as expected, the shape complete. */
function checkTable(classify: (err: unknown) => Failure, rows: readonly Row[]): void {
  for (const [what, err, retriable, code, status] of rows) {
    const f = classify(err);
    expect({ what, retriable: f.retriable, code: f.code }).toEqual({ what, retriable, code });
    if (status !== undefined) expect({ what, status: f.status }).toEqual({ what, status });
    expect(Object.keys(f).sort()).toEqual(['code', 'message', 'retriable', 'status']);
    expect(typeof f.message).toBe('string');
  }
}

const ownErrors: readonly Row[] = [
  ['a retriable SinkError of ours', new SinkError('s', 'busy', { code: 'OWN_BUSY', retriable: true }), true, 'OWN_BUSY'],
  ['a permanent SinkError of ours', new SinkError('s', 'bad', { code: 'OWN_BAD', retriable: false }), false, 'OWN_BAD'],
  ['a DecodeError', new DecodeError('garbled', { code: 'DECODE_X' }), false, 'DECODE_X'],
];

const classifiers = { postgres: classifyPostgres, elasticsearch: classifyElasticsearch, redis: classifyRedis, influxdb: classifyInfluxdb };

describe('every connector classify(err)', () => {
  it.each(Object.entries(classifiers))('%s: errors the router raised keep their own verdict and code', (_kind, classify) => {
    checkTable(classify, ownErrors);
  });

  it.each(Object.entries(classifiers))('%s: programmer errors and unknown values are not retriable', (_kind, classify) => {
    for (const err of [new TypeError('x is not a function'), new RangeError('bad length'), 'a string', 42, null, undefined]) {
      expect(classify(err).retriable).toBe(false);
    }
  });
});

describe('postgres classify', () => {
  const dbError = (code: string, message = 'server says no') => Object.assign(new pg.DatabaseError(message, 0, 'error'), { code });
  const errno = (code: string) => Object.assign(new Error(`connect ${code}`), { code });

  it('sorts SQLSTATEs, socket errors and driver messages', () => {
    checkTable(classifyPostgres, [
      ['connection failure', dbError('08006'), true, 'PG_08006', '08006'],
      ['serialization failure', dbError('40001'), true, 'PG_40001', '40001'],
      ['deadlock', dbError('40P01'), true, 'PG_40P01', '40P01'],
      ['too many connections', dbError('53300'), true, 'PG_53300', '53300'],
      ['statement timeout', dbError('57014'), true, 'PG_57014', '57014'],
      ['admin shutdown', dbError('57P01'), true, 'PG_57P01', '57P01'],
      ['system error', dbError('58030'), true, 'PG_58030', '58030'],
      ['lock not available', dbError('55P03'), true, 'PG_55P03', '55P03'],
      ['object in use', dbError('55006'), true, 'PG_55006', '55006'],
      ['invalid text', dbError('22P02'), false, 'PG_22P02', '22P02'],
      ['not null violation', dbError('23502'), false, 'PG_23502', '23502'],
      ['unique violation', dbError('23505'), false, 'PG_23505', '23505'],
      ['undefined column', dbError('42703'), false, 'PG_42703', '42703'],
      ['insufficient privilege', dbError('42501'), false, 'PG_42501', '42501'],
      ['bad password', dbError('28P01'), false, 'PG_28P01', '28P01'],
      ['connection refused', errno('ECONNREFUSED'), true, 'PG_ECONNREFUSED'],
      ['connection reset', errno('ECONNRESET'), true, 'PG_ECONNRESET'],
      ['DNS lookup again', errno('EAI_AGAIN'), true, 'PG_EAI_AGAIN'],
      ['other errno', errno('EACCES'), false, 'PG_EACCES'],
      ['lost connection', new Error('Connection terminated unexpectedly'), true, 'PG_ERROR'],
      ['pool checkout timeout', new Error('timeout exceeded when trying to connect'), true, 'PG_ERROR'],
      ['unknown error', new Error('something else'), false, 'PG_ERROR'],
    ]);
  });

  it('names the SQLSTATE in the message; isRetriable and toSinkError agree with classify', () => {
    const err = dbError('23502', 'null value in column "x"');
    expect(classifyPostgres(err).message).toBe('null value in column "x" (SQLSTATE 23502)');
    for (const e of [err, dbError('40001'), errno('ECONNRESET'), new TypeError('bug')]) {
      const f = classifyPostgres(e);
      expect(isRetriablePostgres(e)).toBe(f.retriable);
      const sinkError = pgSinkError('pg', 'write', e);
      expect({ code: sinkError.code, retriable: sinkError.retriable, message: sinkError.message }).toEqual({
        code: f.code,
        retriable: f.retriable,
        message: `sink pg: write: ${f.message}`,
      });
    }
  });
});

describe('elasticsearch classify', () => {
  const response = (statusCode: number, body: unknown) =>
    new errors.ResponseError({ body, statusCode, headers: {}, warnings: null, meta: {} } as unknown as ConstructorParameters<typeof errors.ResponseError>[0]);
  const mappingError = { error: { type: 'mapper_parsing_exception', reason: 'failed to parse field [n]', caused_by: { type: 'number_format_exception', reason: 'x' } } };

  it('sorts HTTP answers and transport failures', () => {
    checkTable(classifyElasticsearch, [
      ['too many requests', response(429, { error: { type: 'es_rejected_execution_exception', reason: 'queue full' } }), true, 'ES_HTTP_429', 429],
      ['server error', response(500, { error: { type: 'exception', reason: 'boom' } }), true, 'ES_HTTP_500', 500],
      ['unavailable', response(503, 'unavailable'), true, 'ES_HTTP_503', 503],
      ['mapping error', response(400, mappingError), false, 'ES_HTTP_400', 400],
      ['unauthorized', response(401, { error: { type: 'security_exception', reason: 'missing authentication' } }), false, 'ES_HTTP_401', 401],
      ['forbidden', response(403, { error: { type: 'security_exception', reason: 'action unauthorized' } }), false, 'ES_HTTP_403', 403],
      ['not found', response(404, { error: { type: 'index_not_found_exception', reason: 'no such index' } }), false, 'ES_HTTP_404', 404],
      ['too large', response(413, 'too large'), false, 'ES_HTTP_413', 413],
      ['timeout', new errors.TimeoutError('Request timed out'), true, 'ES_TIMEOUT'],
      ['connection', new errors.ConnectionError('connect ECONNREFUSED'), true, 'ES_CONNECTION'],
      ['no living connections', new errors.NoLivingConnectionsError('none', {} as ConstructorParameters<typeof errors.NoLivingConnectionsError>[1]), true, 'ES_NO_LIVING_CONNECTIONS'],
      ['aborted', new errors.RequestAbortedError('aborted'), true, 'ES_ABORTED'],
      ['garbled answer', new errors.DeserializationError('bad json', '{'), true, 'ES_BAD_RESPONSE'],
      ['not elasticsearch', new errors.ProductNotSupportedError('Elasticsearch'), false, 'ES_NOT_ELASTICSEARCH'],
      ['unknown error', new Error('something else'), false, 'ES_ERROR'],
    ]);
  });

  it('describes the server error and its cause', () => {
    expect(classifyElasticsearch(response(400, mappingError)).message).toBe(
      'HTTP 400 mapper_parsing_exception: failed to parse field [n] (caused by number_format_exception: x)',
    );
  });

  it('sorts bulk items: 409 and deleting a missing document are success', () => {
    expect(classifyItem('index', 201, undefined)).toBeUndefined();
    expect(classifyItem('index', 409, { type: 'version_conflict_engine_exception', reason: 'stale' })).toBeUndefined();
    expect(classifyItem('delete', 404, undefined)).toBeUndefined();
    expect(classifyItem('index', 429, { type: 'es_rejected_execution_exception', reason: 'full' })).toMatchObject({ retriable: true, code: 'ES_ITEM_429', status: 429 });
    expect(classifyItem('index', 400, { type: 'mapper_parsing_exception', reason: 'bad' })).toMatchObject({ retriable: false, code: 'ES_ITEM_400', status: 400 });
    expect(classifyItem('delete', 404, { type: 'index_not_found_exception', reason: 'gone' })).toMatchObject({ retriable: false, code: 'ES_ITEM_404' });
  });
});

describe('redis classify', () => {
  const reply = (message: string) => Object.assign(new Error(message), { name: 'ReplyError' });

  it('sorts error replies and connection failures', () => {
    checkTable(classifyRedis, [
      ['loading', reply('LOADING Redis is loading the dataset in memory'), true, 'REDIS_LOADING', 'LOADING'],
      ['busy script', reply('BUSY Redis is busy running a script'), true, 'REDIS_BUSY', 'BUSY'],
      ['replica', reply("READONLY You can't write against a read only replica."), true, 'REDIS_READONLY', 'READONLY'],
      ['out of memory', reply("OOM command not allowed when used memory > 'maxmemory'."), true, 'REDIS_OOM', 'OOM'],
      ['script flushed', reply('NOSCRIPT No matching script.'), true, 'REDIS_NOSCRIPT', 'NOSCRIPT'],
      ['cluster redirect', reply('MOVED 3999 127.0.0.1:6381'), true, 'REDIS_MOVED', 'MOVED'],
      ['no auth', reply('NOAUTH Authentication required.'), true, 'REDIS_NOAUTH', 'NOAUTH'],
      ['wrong password', reply('WRONGPASS invalid username-password pair'), true, 'REDIS_WRONGPASS', 'WRONGPASS'],
      ['acl', reply('NOPERM this user has no permissions'), true, 'REDIS_NOPERM', 'NOPERM'],
      ['wrong type', reply('WRONGTYPE Operation against a key holding the wrong kind of value'), false, 'REDIS_WRONGTYPE', 'WRONGTYPE'],
      ['generic error', reply("ERR unknown command 'NOPE'"), false, 'REDIS_ERR', 'ERR'],
      ['reply without a code', reply('something odd'), false, 'REDIS_ERROR'],
      ['closed connection', new Error('Connection is closed.'), true, 'REDIS_CONNECTION'],
      ['offline queue off', new Error("Stream isn't writeable and enableOfflineQueue options is false"), true, 'REDIS_CONNECTION'],
      ['command timeout', new Error('Command timed out'), true, 'REDIS_TIMEOUT'],
      ['socket timeout', Object.assign(new Error('connect'), { code: 'ETIMEDOUT' }), true, 'REDIS_TIMEOUT'],
      ['client bug', new TypeError('x is not a function'), false, 'REDIS_CLIENT_BUG'],
    ]);
  });

  it('classifies a script row status like the same error reply', () => {
    expect(classifyReply('WRONGTYPE Operation against a key')).toEqual(classifyRedis(reply('WRONGTYPE Operation against a key')));
    expect(classifyReply('OOM command not allowed')).toMatchObject({ retriable: true, code: 'REDIS_OOM' });
  });

  it('keeps the command arguments out of the error it raises', () => {
    const err = Object.assign(reply('WRONGTYPE Operation against a key'), { command: { name: 'evalsha', args: ['secret row data'] } });
    const sinkError = redisSinkError('r', 'write failed', err);
    expect({ code: sinkError.code, retriable: sinkError.retriable, message: sinkError.message }).toEqual({
      code: 'REDIS_WRONGTYPE',
      retriable: false,
      message: 'sink r: write failed: WRONGTYPE Operation against a key',
    });
    expect('command' in (sinkError.cause as object)).toBe(false);
  });
});

describe('influxdb classify', () => {
  it('sorts HTTP answers, transport failures and unrepresentable values', () => {
    checkTable(classifyInfluxdb, [
      ['refused', new InfluxTransportError('connect ECONNREFUSED', false, { cause: null }), true, 'INFLUX_CONNECTION'],
      ['timeout', new InfluxTransportError('timed out', true, { cause: null }), true, 'INFLUX_TIMEOUT'],
      ['database dropped', new InfluxHttpError(404, 'database not found: "x"', 'POST /write'), true, 'INFLUX_DATABASE_NOT_FOUND', 404],
      ['too many requests', new InfluxHttpError(429, 'slow down', 'POST /write'), true, 'INFLUX_HTTP_429', 429],
      ['server error', new InfluxHttpError(500, 'timeout', 'POST /write'), true, 'INFLUX_HTTP_500', 500],
      ['unavailable', new InfluxHttpError(503, 'busy', 'POST /write'), true, 'INFLUX_HTTP_503', 503],
      ['type conflict', new InfluxHttpError(400, 'partial write: field type conflict: input field "n"', 'POST /write'), false, 'INFLUX_FIELD_TYPE_CONFLICT', 400],
      ['partial write', new InfluxHttpError(400, 'partial write: points beyond retention policy dropped=1', 'POST /write'), false, 'INFLUX_PARTIAL_WRITE', 400],
      ['parse error', new InfluxHttpError(400, "unable to parse 'x': missing fields", 'POST /write'), false, 'INFLUX_PARSE', 400],
      ['other 400', new InfluxHttpError(400, 'bad request', 'POST /write'), false, 'INFLUX_HTTP_400', 400],
      ['unauthorized', new InfluxHttpError(401, 'authorization failed', 'POST /write'), false, 'INFLUX_HTTP_401', 401],
      ['too large', new InfluxHttpError(413, 'request entity too large', 'POST /write'), false, 'INFLUX_HTTP_413', 413],
      ['failed statement', new InfluxHttpError(200, 'error parsing query', 'POST /query'), false, 'INFLUX_QUERY', 200],
      ['unrepresentable', new UnrepresentableError('integer out of range'), false, 'INFLUX_UNREPRESENTABLE'],
      ['unknown error', new Error('something else'), false, 'INFLUX_ERROR'],
    ]);
  });
});
