// rest.js — what WordPress's REST server and WooCommerce's collection
// controllers do with a list request: validate the query against the route's
// argument schema (WordPress's own error messages), filter, sort, paginate,
// and build X-WP-Total / X-WP-TotalPages / Link.
'use strict';

const php = require('./php');

// ---------------------------------------------------------------------------
// Argument schemas, in WordPress's registration order (the order invalid
// parameters are listed in).

const DATE = { type: 'string', format: 'date-time' };
const ID_LIST = { type: 'array', idList: true };

function collectionArgs(orderbyEnum) {
  return [
    ['context', { type: 'string', enum: ['view', 'edit'], default: 'view' }],
    ['page', { type: 'integer', default: 1, minimum: 1 }],
    ['per_page', { type: 'integer', default: 10, minimum: 1, maximum: 100 }],
    ['search', { type: 'string' }],
    ['after', DATE],
    ['before', DATE],
    ['modified_after', DATE],
    ['modified_before', DATE],
    ['dates_are_gmt', { type: 'boolean', default: false }],
    ['exclude', ID_LIST],
    ['include', ID_LIST],
    ['offset', { type: 'integer' }],
    ['order', { type: 'string', enum: ['asc', 'desc'], default: 'desc' }],
    ['orderby', { type: 'string', enum: orderbyEnum, default: 'date' }],
  ];
}

const ORDER_STATUS_ENUM = ['any', 'trash', 'pending', 'processing', 'on-hold', 'completed', 'cancelled',
  'refunded', 'failed', 'checkout-draft'];
const PRODUCT_ORDERBY = ['date', 'id', 'include', 'title', 'slug', 'modified', 'price', 'popularity', 'rating',
  'menu_order'];

const SCHEMAS = {
  products: [
    ...collectionArgs(PRODUCT_ORDERBY),
    ['status', { type: 'string', enum: ['any', 'future', 'trash', 'draft', 'pending', 'private', 'publish'],
      default: 'any' }],
    ['type', { type: 'string', enum: ['simple', 'grouped', 'external', 'variable'] }],
    ['sku', { type: 'string' }],
    ['category', { type: 'string' }],
  ],
  variations: collectionArgs(PRODUCT_ORDERBY),
  orders: [
    ...collectionArgs(['date', 'id', 'include', 'title', 'slug', 'modified']),
    ['status', { type: 'array', items: { type: 'string', enum: ORDER_STATUS_ENUM }, default: ['any'] }],
    ['customer', { type: 'integer' }],
  ],
};

// ---------------------------------------------------------------------------
// Validation (rest_validate_value_from_schema) and sanitising

function wpError(code, message, data = null) {
  return { code, message, data };
}

// rest_is_integer(): is_numeric() and a whole number.
function isInteger(v) {
  return typeof v === 'string' && /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/.test(v)
    && Number.isInteger(Number(v));
}

function isBoolean(v) {
  return typeof v === 'string' && ['false', 'true', '0', '1'].includes(v.toLowerCase());
}

// rest_parse_date()'s RFC 3339 pattern, plus strtotime() accepting it.
const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(Z|[+-]\d{2}(?::\d{2})?)?$/;

function parseDate(v) {
  const m = DATE_RE.exec(v);
  if (!m) return null;
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number);
  const wall = Date.UTC(y, mo - 1, d, h, mi, s) / 1000;
  const check = new Date(wall * 1000);
  if (check.getUTCMonth() !== mo - 1 || check.getUTCDate() !== d || h > 23 || mi > 59 || s > 59) return null;
  let offset = null;
  if (m[7] === 'Z') offset = 0;
  else if (m[7]) {
    const sign = m[7][0] === '-' ? -1 : 1;
    offset = sign * (Number(m[7].slice(1, 3)) * 3600 + Number(m[7].slice(4, 6) || 0) * 60);
  }
  return { wall, offset };
}

function validateScalar(name, v, schema) {
  if (typeof v !== 'string') return wpError('rest_invalid_type', `${name} is not of type ${schema.type}.`, { param: name });
  if (schema.type === 'integer') {
    if (!isInteger(v)) return wpError('rest_invalid_type', `${name} is not of type integer.`, { param: name });
    const n = Number(v);
    if (schema.minimum !== undefined && schema.maximum !== undefined && (n < schema.minimum || n > schema.maximum)) {
      return wpError('rest_out_of_bounds',
        `${name} must be between ${schema.minimum} (inclusive) and ${schema.maximum} (inclusive)`);
    }
    if (schema.minimum !== undefined && n < schema.minimum) {
      return wpError('rest_out_of_bounds', `${name} must be greater than or equal to ${schema.minimum}`);
    }
  }
  if (schema.type === 'boolean' && !isBoolean(v)) {
    return wpError('rest_invalid_type', `${name} is not of type boolean.`, { param: name });
  }
  if (schema.enum && !schema.enum.includes(v)) {
    return schema.enum.length === 1
      ? wpError('rest_not_in_enum', `${name} is not ${schema.enum[0]}.`)
      : wpError('rest_not_in_enum', `${name} is not one of ${php.sprintfList(schema.enum)}.`);
  }
  if (schema.format === 'date-time' && !parseDate(v)) return wpError('rest_invalid_date', 'Invalid date.');
  return null;
}

function sanitizeScalar(v, schema) {
  if (schema.type === 'integer') return Math.trunc(Number(v));
  if (schema.type === 'boolean') return !['false', '0', ''].includes(v.toLowerCase());
  if (schema.type === 'string' && !schema.enum && !schema.format) return v.trim();
  return v;
}

// wp_parse_list(): an array, or a string split on commas and spaces.
function parseList(v) {
  if (v instanceof Map) return [...v.values()].filter((x) => typeof x === 'string');
  return String(v).split(/[\s,]+/).filter((x) => x !== '');
}

// -> {params} with sanitised values and defaults, or {error} (400 rest_invalid_param).
function validateParams(schemaName, query) {
  const params = {};
  const invalid = {};
  const details = {};
  for (const [name0, schema] of SCHEMAS[schemaName]) {
    const name = php.fromUtf8(name0);
    const raw = query.has(name) ? query.get(name) : undefined;
    if (raw === undefined) {
      if (schema.default !== undefined) params[name0] = schema.default;
      continue;
    }
    let err = null;
    let value;
    if (schema.idList) {
      value = [...new Set(parseList(raw).map((x) => Math.abs(Math.trunc(Number(x) || 0))))];
    } else if (schema.type === 'array') {
      const items = parseList(raw).map(php.toUtf8);
      items.some((item, i) => (err = validateScalar(`${name0}[${i}]`, item, schema.items)));
      value = items;
    } else {
      const text = typeof raw === 'string' ? php.toUtf8(raw) : raw;
      err = validateScalar(name0, text, schema);
      if (!err) value = sanitizeScalar(text, schema);
    }
    if (err) {
      invalid[name0] = err.message;
      details[name0] = err;
    } else params[name0] = value;
  }
  const names = Object.keys(invalid);
  if (names.length) {
    return { error: wpError('rest_invalid_param', `Invalid parameter(s): ${names.join(', ')}`,
      { status: 400, params: invalid, details }) };
  }
  return { params };
}

// ---------------------------------------------------------------------------
// Dates as WP_Date_Query compares them: the value becomes a wall-clock time
// in the shop's timezone (a naive value is taken as one already; one with an
// offset is converted), and is compared, exclusively, with the column's
// wall-clock value: *_gmt when dates_are_gmt, else the local one.

function dateBound(value, tzOffset) {
  const d = parseDate(value);
  return d.offset === null ? d.wall : d.wall - d.offset + tzOffset;
}

// Tests on a record; createdOf / modifiedOf give its epoch seconds (UTC).
function dateFilters(params, tzOffset, createdOf, modifiedOf) {
  const shift = params.dates_are_gmt ? 0 : tzOffset;
  const tests = [];
  const add = (name, of, after) => {
    if (params[name] === undefined) return;
    const bound = dateBound(params[name], tzOffset);
    tests.push(after ? (r) => of(r) + shift > bound : (r) => of(r) + shift < bound);
  };
  add('before', createdOf, false);
  add('after', createdOf, true);
  add('modified_before', modifiedOf, false);
  add('modified_after', modifiedOf, true);
  return tests;
}

// ---------------------------------------------------------------------------
// Sorting.  WooCommerce adds ID to "date" and "modified" so pages are stable;
// here every key is followed by the ID, in the same direction.

// Sorts ascending by key(row), then id; decorate-sort so key runs once a row.
function sortByKey(rows, key) {
  const decorated = rows.map((r) => [key(r), r]);
  decorated.sort(([x, a], [y, b]) => (x < y ? -1 : x > y ? 1 : a.id - b.id));
  return decorated.map(([, r]) => r);
}

// orderby=include: the order of the include list.
function sortByInclude(rows, include) {
  const at = new Map(include.map((id, i) => [id, i]));
  return rows.slice().sort((a, b) => (at.get(a.id) ?? 1e9) - (at.get(b.id) ?? 1e9));
}

// ---------------------------------------------------------------------------
// Pagination

function paginate(rows, params) {
  const perPage = params.per_page;
  const page = params.page;
  const start = params.offset !== undefined ? params.offset : (page - 1) * perPage;
  const total = rows.length;
  return {
    items: rows.slice(start, start + perPage),
    total,
    totalPages: Math.ceil(total / perPage),
    page,
  };
}

const AUTH_PARAMS = /^(consumer_key|consumer_secret|oauth_.*)$/;

// The Link header of a collection answer: add_query_arg( page ) on the
// route's URL with the request's query, less the credentials.  One header,
// "prev" then "next", as WP_REST_Response::link_header() joins them.
function paginationLink(base, query, page, totalPages) {
  const kept = new Map([...query].filter(([k]) => !AUTH_PARAMS.test(k) && k !== 'rest_route'));
  const urlFor = (n) => {
    const q = new Map(kept);
    q.set('page', String(n));
    return `${base}?${php.buildQuery(q)}`;
  };
  const links = [];
  if (page > 1) links.push(`<${urlFor(Math.min(page - 1, totalPages))}>; rel="prev"`);
  if (totalPages > page) links.push(`<${urlFor(page + 1)}>; rel="next"`);
  return links.length ? links.join(', ') : null;
}

// ---------------------------------------------------------------------------
// _fields (rest_filter_response_fields): top-level and dotted nested names.

function filterFields(doc, fieldsParam) {
  if (fieldsParam === undefined) return doc;
  const fields = parseList(fieldsParam).map(php.toUtf8);
  if (!fields.length) return doc;
  const out = {};
  for (const field of fields) {
    const path = field.split('.');
    let src = doc;
    let dst = out;
    for (let i = 0; i < path.length; i++) {
      if (src === null || typeof src !== 'object' || !(path[i] in src)) break;
      if (i === path.length - 1) dst[path[i]] = src[path[i]];
      else {
        if (typeof dst[path[i]] !== 'object' || dst[path[i]] === null) dst[path[i]] = {};
        src = src[path[i]];
        dst = dst[path[i]];
      }
    }
  }
  return out;
}

module.exports = { validateParams, dateFilters, sortByKey, sortByInclude, paginate, paginationLink, filterFields, wpError,
  ORDER_STATUS_ENUM };
