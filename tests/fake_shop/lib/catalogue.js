// catalogue.js — the shop's products, variations and orders.
//
// Only a small "skeleton" per record is kept in memory (id, dates, status,
// what the list filters need); the full WooCommerce document is rendered on
// demand from (seed, record index), so 10,000 products and 50,000 orders
// cost a few megabytes.  Changes made through the control endpoints
// (modify, bad_records, add) live in small maps keyed by id.
//
// IDs come from one counter, as WordPress posts do: products first (each
// followed by its variations and its image attachment), then orders (a
// refunded order is followed by its refund), so a product id is never an
// order id.  Records are created in id order, so date order is id order.
'use strict';

const { sortByKey } = require('./rest');

const GENERATED_UNTIL = Date.UTC(2025, 5, 1) / 1000; // the generated history ends 2025-06-01T00:00:00Z
const DAY = 86400;

// ---------------------------------------------------------------------------
// Deterministic randomness

function hashString(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function mulberry32(a) {
  return function next() {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function rngFor(seed, stream, index) {
  const next = mulberry32(hashString(`${seed}|${stream}|${index}`));
  const rng = {
    next,
    int: (n) => Math.floor(next() * n),
    chance: (p) => next() < p,
    between: (a, b) => a + Math.floor(next() * (b - a + 1)),
    pick: (list) => list[Math.floor(next() * list.length)],
    weighted(pairs) {
      let x = next() * pairs.reduce((s, [, w]) => s + w, 0);
      for (const [item, w] of pairs) {
        x -= w;
        if (x < 0) return item;
      }
      return pairs[pairs.length - 1][0];
    },
    chars(n, alphabet) {
      let s = '';
      for (let i = 0; i < n; i++) s += alphabet[Math.floor(next() * alphabet.length)];
      return s;
    },
  };
  return rng;
}

const ALNUM = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const HEX = '0123456789abcdef';

// ---------------------------------------------------------------------------
// What the shop sells

const METALS = [
  { key: 'gold', label: 'Gold', code: 'AU', perOzCents: 235000, purity: '999.9', weight: 35 },
  { key: 'silver', label: 'Silver', code: 'AG', perOzCents: 2850, purity: '999', weight: 40 },
  { key: 'platinum', label: 'Platinum', code: 'PT', perOzCents: 98000, purity: '999.5', weight: 15 },
  { key: 'palladium', label: 'Palladium', code: 'PD', perOzCents: 102000, purity: '999.5', weight: 10 },
];
const FORMS = [
  { key: 'coin', label: 'Coin', plural: 'Coins', code: 'C', weight: 55 },
  { key: 'bar', label: 'Bar', plural: 'Bars', code: 'B', weight: 35 },
  { key: 'round', label: 'Round', plural: 'Rounds', code: 'R', weight: 10 },
];
const WEIGHTS = [
  { label: '1/10 oz', oz: 0.1, code: '0010' }, { label: '1/4 oz', oz: 0.25, code: '0025' },
  { label: '1/2 oz', oz: 0.5, code: '0050' }, { label: '1 oz', oz: 1, code: '0100' },
  { label: '2 oz', oz: 2, code: '0200' }, { label: '5 oz', oz: 5, code: '0500' },
  { label: '10 oz', oz: 10, code: '1000' }, { label: '50 g', oz: 1.60754, code: 'G050' },
  { label: '100 g', oz: 3.21507, code: 'G100' }, { label: '250 g', oz: 8.03769, code: 'G250' },
  { label: '1 kg', oz: 32.1507, code: 'K001' },
];
const COIN_WEIGHTS = [0, 1, 2, 3, 4];
const BAR_WEIGHTS = [3, 6, 7, 8, 9, 10];
const COIN_SERIES = ['Maple Leaf', 'Krügerrand', 'Wiener Philharmoniker', 'American Eagle', 'Britannia',
  'Känguru', 'Panda', 'Libertad', 'Lunar Serie', 'Buffalo', 'Arche Noah', 'Somalia Elefant'];
const BAR_BRANDS = ['Heraeus', 'Umicore', 'Valcambi', 'PAMP Suisse', 'C. Hafner', 'Argor-Heraeus',
  'Perth Mint', 'Royal Mint'];

const BESTSELLER = { id: 15, name: 'Bestseller', slug: 'bestseller' };

// Categories 20.. : one per metal and form, e.g. {id: 20, name: "Gold Coins", slug: "gold-coins"}.
function category(metalIdx, formIdx) {
  const name = `${METALS[metalIdx].label} ${FORMS[formIdx].plural}`;
  return { id: 20 + metalIdx * FORMS.length + formIdx, name, slug: slugify(name) };
}

function slugify(text) {
  return text.normalize('NFD').replace(/[\u0300-\u036f]/g, '').toLowerCase()
    .replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
}

function unitPriceCents(metal, form, weight, premiumPermille) {
  const premium = 0.02 + 0.03 / Math.sqrt(weight.oz) + (form.key === 'coin' ? 0.03 : 0) + premiumPermille / 1000;
  return Math.round(metal.perOzCents * weight.oz * (1 + premium));
}

// A product's lasting traits, drawn once from its own random stream.
function productSpec(seed, index) {
  const r = rngFor(seed, 'product', index);
  const metalIdx = METALS.indexOf(r.weighted(METALS.map((m) => [m, m.weight])));
  const formIdx = FORMS.indexOf(r.weighted(FORMS.map((f) => [f, f.weight])));
  const metal = METALS[metalIdx];
  const form = FORMS[formIdx];
  const variable = r.chance(0.25);
  const pool = form.key === 'bar' ? BAR_WEIGHTS : COIN_WEIGHTS;
  let weights;
  if (variable) {
    const start = r.int(pool.length - 1);
    weights = pool.slice(start, start + r.between(2, 4));
    if (weights.length < 2) weights = pool.slice(-2);
  } else weights = [r.pick(pool)];
  const maker = form.key === 'bar' ? r.pick(BAR_BRANDS) : r.pick(COIN_SERIES);
  const year = form.key === 'coin' ? 2015 + r.int(10) : null;
  const premium = r.int(20);
  return {
    metalIdx, formIdx, weights, maker, year, variable,
    status: r.weighted([['publish', 92], ['draft', 3], ['pending', 2], ['private', 3]]),
    onSale: r.chance(0.1),
    manageStock: r.chance(0.8),
    stock: r.chance(0.1) ? 0 : r.between(1, 200),
    featured: r.chance(0.05),
    bestseller: r.chance(0.1),
    totalSales: r.int(500),
    noSku: r.chance(0.03),
    prices: weights.map((w) => unitPriceCents(metal, form, WEIGHTS[w], premium)),
    modifiedLater: r.chance(0.6),
    modifiedFraction: r.next(),
    createdJitter: r.next(),
    tieWithPrevious: r.chance(0.05),
  };
}

function productName(spec) {
  const metal = METALS[spec.metalIdx].label;
  const form = FORMS[spec.formIdx].label;
  const weight = spec.variable ? '' : `${WEIGHTS[spec.weights[0]].label} `;
  if (spec.year) return `${spec.maker} ${spec.year} ${weight}${metal} ${form}`;
  return `${spec.maker} ${weight}${metal} ${form}`;
}

function productSku(spec, index) {
  if (spec.noSku) return '';
  const base = `GS-${METALS[spec.metalIdx].code}${FORMS[spec.formIdx].code}-${String(index + 1).padStart(5, '0')}`;
  return spec.variable ? base : `${base}-${WEIGHTS[spec.weights[0]].code}`;
}

// ---------------------------------------------------------------------------
// Customers: customer-<n>@example.com, n in 1..50, user id n + 1

const FIRST_NAMES = ['Anna', 'Jonas', 'Lea', 'Lukas', 'Marie', 'Felix', 'Sophie', 'Paul', 'Emma', 'Elias',
  'Hannah', 'Noah', 'Mia', 'Ben', 'Zoë', 'Jürgen', 'Chloé', 'Oliver', 'Olivia', 'Liam'];
const LAST_NAMES = ['Müller', 'Schmidt', 'Schneider', 'Fischer', 'Weber', 'Meyer', 'Wagner', 'Becker',
  'Schulz', 'Hoffmann', 'Koch', 'Bauer', 'Richter', 'Klein', 'Wolf', 'Smith', 'Johnson', 'Dubois',
  'Van der Berg', "O'Brien"];
const PLACES = [
  { city: 'München', state: 'BY', postcode: '80331', country: 'DE', street: 'Marienplatz', phone: '+49 89' },
  { city: 'Berlin', state: 'BE', postcode: '10115', country: 'DE', street: 'Invalidenstraße', phone: '+49 30' },
  { city: 'Hamburg', state: 'HH', postcode: '20095', country: 'DE', street: 'Mönckebergstraße', phone: '+49 40' },
  { city: 'Wien', state: '', postcode: '1010', country: 'AT', street: 'Graben', phone: '+43 1' },
  { city: 'Zürich', state: 'ZH', postcode: '8001', country: 'CH', street: 'Bahnhofstrasse', phone: '+41 44' },
  { city: 'Amsterdam', state: '', postcode: '1012 JS', country: 'NL', street: 'Damrak', phone: '+31 20' },
  { city: 'Lyon', state: '', postcode: '69002', country: 'FR', street: 'Rue de la République', phone: '+33 4' },
  { city: 'Austin', state: 'TX', postcode: '78701', country: 'US', street: 'Congress Ave', phone: '+1 512' },
];
const CUSTOMERS = 50;

function customer(n) {
  const place = PLACES[(n * 3) % PLACES.length];
  const address = {
    first_name: FIRST_NAMES[(n * 7) % FIRST_NAMES.length],
    last_name: LAST_NAMES[(n * 11) % LAST_NAMES.length],
    company: n % 9 === 0 ? `Edelmetall Handel ${n} GmbH` : '',
    address_1: `${place.street} ${1 + (n * 13) % 120}`,
    address_2: n % 5 === 0 ? `${1 + n % 4}. OG` : '',
    city: place.city,
    state: place.state,
    postcode: place.postcode,
    country: place.country,
  };
  return { n, userId: n + 1, address, email: `customer-${n}@example.com`,
    phone: `${place.phone} ${String(5550000 + n * 37).slice(0, 7)}` };
}

// ---------------------------------------------------------------------------
// Formatting

function money(cents) {
  const sign = cents < 0 ? '-' : '';
  const abs = Math.abs(cents);
  return `${sign}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, '0')}`;
}

function isoSeconds(epochSeconds) {
  return new Date(epochSeconds * 1000).toISOString().slice(0, 19);
}

function priceHtml(cents) {
  const [whole, frac] = money(cents).split('.');
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, '.');
  return `<span class="woocommerce-Price-amount amount"><bdi>${grouped},${frac}&nbsp;`
    + '<span class="woocommerce-Price-currencySymbol">&euro;</span></bdi></span>';
}

// Shipping weight in kg as WooCommerce shows it: "0.0311", "1".
function kilograms(oz) {
  return (oz * 0.0311035).toFixed(4).replace(/\.?0+$/, '');
}

function taxOf(cents) {
  return Math.round(cents * 0.19);
}

// ---------------------------------------------------------------------------
// The catalogue

const ORDER_STATUSES = ['pending', 'processing', 'on-hold', 'completed', 'cancelled', 'refunded', 'failed'];
const PAID_STATUSES = new Set(['processing', 'completed', 'refunded']);
const NEXT_STATUS = { pending: 'processing', 'on-hold': 'processing', processing: 'completed' };
const UNKNOWN_PRODUCT_ID = 999999999;

class Catalogue {
  constructor({ seed = 'sluice', products = 50, orders = 200, tzOffsetMinutes = 120 } = {}) {
    this.seed = String(seed);
    this.tzOffset = tzOffsetMinutes * 60;
    this.products = [];
    this.orders = [];
    this.productIndexById = new Map();
    this.slugCounts = new Map();
    this.orderIndexById = new Map();
    this.nextId = 11; // WordPress's own first posts sit below
    this.modifyRound = 0;
    this.version = 0; // bumped on every change; sort caches key on it
    this.sortCache = new Map();
    this.resetChanges();
    const productSpan = 330 * DAY;
    const productStart = GENERATED_UNTIL - 730 * DAY;
    for (let i = 0; i < products; i++) {
      this.addProduct(productStart + (i * productSpan) / products, productSpan / products);
    }
    const orderSpan = 365 * DAY;
    const orderStart = GENERATED_UNTIL - orderSpan;
    for (let j = 0; j < orders; j++) {
      this.addOrder(orderStart + (j * orderSpan) / orders, orderSpan / orders);
    }
  }

  resetChanges() {
    this.mods = { product: new Map(), order: new Map() }; // id -> {modified, revision, status?}
    this.bad = { missing_email: new Set(), unknown_product: new Set(), bad_price: new Set(),
      missing_name: new Set() };
    this.version++;
  }

  // wp_unique_post_slug(): "name", then "name-2", "name-3", ...
  uniqueSlug(base) {
    const seen = (this.slugCounts.get(base) || 0) + 1;
    this.slugCounts.set(base, seen);
    return seen === 1 ? base : `${base}-${seen}`;
  }

  allocateIds(count) {
    const id = this.nextId;
    this.nextId += count;
    return id;
  }

  // Records are created in time order; a few share the previous second.
  createdAt(slotStart, slotLength, jitter, tie, list) {
    const prev = list.length ? list[list.length - 1].created : 0;
    if (tie && prev) return prev;
    return Math.max(prev, Math.floor(slotStart + jitter * slotLength));
  }

  addProduct(slotStart, slotLength) {
    const index = this.products.length;
    const spec = productSpec(this.seed, index);
    const varCount = spec.variable ? spec.weights.length : 0;
    const id = this.allocateIds(varCount + 2); // product, variations, image
    const created = this.createdAt(slotStart, slotLength, spec.createdJitter, spec.tieWithPrevious, this.products);
    const until = Math.max(created, GENERATED_UNTIL);
    const modified = spec.modifiedLater ? created + Math.floor(spec.modifiedFraction * (until - created)) : created;
    const name = productName(spec);
    const sk = { kind: 'product', index, id, created, modified, status: spec.status, spec, varCount, name,
      sku: productSku(spec, index), slug: this.uniqueSlug(slugify(name)),
      category: category(spec.metalIdx, spec.formIdx) };
    this.products.push(sk);
    this.productIndexById.set(id, index);
    this.version++;
    return sk;
  }

  addOrder(slotStart, slotLength) {
    const index = this.orders.length;
    const r = rngFor(this.seed, 'order-skeleton', index);
    const jitter = r.next();
    const tie = r.chance(0.03);
    const created = this.createdAt(slotStart, slotLength, jitter, tie, this.orders);
    const recent = created > GENERATED_UNTIL - 30 * DAY;
    const status = recent
      ? r.weighted([['pending', 10], ['processing', 30], ['on-hold', 8], ['completed', 40], ['cancelled', 5],
        ['refunded', 3], ['failed', 4]])
      : r.weighted([['pending', 1], ['processing', 2], ['on-hold', 1], ['completed', 80], ['cancelled', 7],
        ['refunded', 4], ['failed', 5]]);
    const id = this.allocateIds(status === 'refunded' ? 2 : 1);
    const later = {
      pending: 0, processing: r.between(60, 7200), 'on-hold': r.between(60, DAY), completed: r.between(3600, 7 * DAY),
      cancelled: r.between(3600, 3 * DAY), refunded: r.between(2 * DAY, 20 * DAY), failed: r.between(5, 600),
    }[status];
    const modified = created >= GENERATED_UNTIL ? created : Math.min(created + later, GENERATED_UNTIL);
    const sk = { kind: 'order', index, id, created, modified, status, customer: 1 + r.int(CUSTOMERS),
      registered: r.chance(0.7), paidAfter: r.between(30, 600), productsAvailable: this.products.length,
      refundId: status === 'refunded' ? id + 1 : 0 };
    this.orders.push(sk);
    this.orderIndexById.set(id, index);
    this.version++;
    return sk;
  }

  // POST /__control/add: new records, created now.
  add(productCount, orderCount) {
    const now = Math.floor(Date.now() / 1000);
    const added = { products: [], orders: [] };
    for (let i = 0; i < productCount; i++) added.products.push(this.addProduct(now, 0).id);
    for (let j = 0; j < orderCount; j++) added.orders.push(this.addOrder(now, 0).id);
    return added;
  }

  // ---- lookups -----------------------------------------------------------

  productById(id) {
    const i = this.productIndexById.get(id);
    return i === undefined ? null : this.products[i];
  }

  orderById(id) {
    const i = this.orderIndexById.get(id);
    return i === undefined ? null : this.orders[i];
  }

  // A variation's parent and position (1-based), or null.
  variationById(id) {
    for (let k = 1; k <= 4; k++) {
      const parent = this.productById(id - k);
      if (parent) return parent.varCount >= k ? { parent, k } : null;
    }
    return null;
  }

  // ---- effective state (generated values plus control changes) ------------

  effective(sk) {
    const m = this.mods[sk.kind].get(sk.id);
    return {
      modified: m ? m.modified : sk.modified,
      revision: m ? m.revision : 0,
      status: m && m.status ? m.status : sk.status,
    };
  }

  // POST /__control/modify for one kind: {"ids": [...]} or {"percent": p}.
  modify(kind, selection) {
    const list = kind === 'product' ? this.products : this.orders;
    const byId = (id) => (kind === 'product' ? this.productById(id) : this.orderById(id));
    let chosen = [];
    const unknown = [];
    if (Array.isArray(selection.ids)) {
      for (const id of selection.ids) {
        const sk = byId(Number(id));
        if (sk) chosen.push(sk); else unknown.push(id);
      }
    } else if (selection.percent !== undefined) {
      chosen = this.pickPercent(list, Number(selection.percent));
    }
    const now = Math.floor(Date.now() / 1000);
    for (const sk of chosen) {
      const before = this.effective(sk);
      const change = { modified: now, revision: before.revision + 1 };
      if (kind === 'order' && NEXT_STATUS[before.status]) change.status = NEXT_STATUS[before.status];
      else if (kind === 'order') change.status = before.status;
      this.mods[kind].set(sk.id, change);
    }
    this.version++;
    return { ids: chosen.map((sk) => sk.id), unknown };
  }

  pickPercent(list, percent) {
    if (!(percent > 0) || list.length === 0) return [];
    const count = Math.min(list.length, Math.max(1, Math.round((list.length * percent) / 100)));
    const r = rngFor(this.seed, 'modify', ++this.modifyRound);
    const picked = new Set();
    while (picked.size < count) picked.add(r.int(list.length));
    return [...picked].sort((a, b) => a - b).map((i) => list[i]);
  }

  // ---- ordering ------------------------------------------------------------

  // The value a record is sorted by for an orderby= value.
  sortKey(kind, orderby) {
    switch (orderby) {
      case 'modified': return (sk) => this.effective(sk).modified;
      case 'title': return (sk) => sk.name;
      case 'slug': return (sk) => sk.slug || '';
      case 'price': return kind === 'product' ? (sk) => this.lowestPrice(sk) : (sk) => sk.created;
      case 'popularity': return kind === 'product' ? (sk) => sk.spec.totalSales : (sk) => sk.created;
      case 'id': return (sk) => sk.id;
      default: return (sk) => sk.created; // date, and rating / menu_order, which are all equal here
    }
  }

  // All products or orders, ascending by orderby then id.  Records are made
  // in date and id order, so those need no sort; others are cached until the
  // catalogue next changes.
  ordered(kind, orderby) {
    const list = kind === 'product' ? this.products : this.orders;
    if (['date', 'id', 'rating', 'menu_order', 'include'].includes(orderby)) return list;
    const cacheKey = `${kind}|${orderby}`;
    const hit = this.sortCache.get(cacheKey);
    if (hit && hit.version === this.version) return hit.rows;
    const rows = sortByKey(list, this.sortKey(kind, orderby));
    this.sortCache.set(cacheKey, { version: this.version, rows });
    return rows;
  }

  lowestPrice(sk) {
    const revision = this.effective(sk).revision;
    return Math.min(...sk.spec.prices.map((_, i) => this.priceCents(sk, sk.varCount ? i + 1 : 0, revision).price));
  }

  markBad(what, ids) {
    for (const id of ids || []) this.bad[what].add(Number(id));
    this.version++;
  }

  // ---- documents -----------------------------------------------------------

  dates(prefix, epochSeconds) {
    if (epochSeconds === null) return { [prefix]: null, [`${prefix}_gmt`]: null };
    return { [prefix]: isoSeconds(epochSeconds + this.tzOffset), [`${prefix}_gmt`]: isoSeconds(epochSeconds) };
  }

  // Unit prices (cents) of a product's variants after control changes.
  priceCents(sk, k, revision) {
    const regular = sk.spec.prices[k ? k - 1 : 0] + revision * 100;
    const sale = sk.spec.onSale ? Math.round(regular * 0.97) : null;
    return { regular, sale, price: sale === null ? regular : sale };
  }

  image(sk, home) {
    const when = new Date(sk.created * 1000);
    const dir = `${when.getUTCFullYear()}/${String(when.getUTCMonth() + 1).padStart(2, '0')}`;
    const id = sk.id + sk.varCount + 1;
    return {
      id, ...this.dates('date_created', sk.created), ...this.dates('date_modified', sk.created),
      src: `${home}/wp-content/uploads/${dir}/${sk.slug}.jpg`,
      name: sk.slug, alt: sk.name,
    };
  }

  productAttributes(sk) {
    const spec = sk.spec;
    return [
      { id: 1, name: 'Metal', slug: 'pa_metal', position: 0, visible: true, variation: false,
        options: [METALS[spec.metalIdx].label] },
      { id: 2, name: 'Weight', slug: 'pa_weight', position: 1, visible: true, variation: spec.variable,
        options: spec.weights.map((w) => WEIGHTS[w].label) },
      { id: 0, name: 'Purity', slug: 'purity', position: 2, visible: true, variation: false,
        options: [METALS[spec.metalIdx].purity] },
    ];
  }

  stockFields(sk, revision) {
    const spec = sk.spec;
    if (!spec.manageStock) {
      return { manage_stock: false, stock_quantity: null, stock_status: 'instock' };
    }
    const qty = Math.max(0, spec.stock - revision);
    return { manage_stock: true, stock_quantity: qty, stock_status: qty > 0 ? 'instock' : 'outofstock' };
  }

  productDoc(sk, home) {
    const eff = this.effective(sk);
    const spec = sk.spec;
    const metal = METALS[spec.metalIdx];
    const form = FORMS[spec.formIdx];
    const variantPrices = spec.variable
      ? spec.weights.map((_, i) => this.priceCents(sk, i + 1, eff.revision))
      : [this.priceCents(sk, 0, eff.revision)];
    const lowest = variantPrices.reduce((a, b) => (b.price < a.price ? b : a));
    const highest = variantPrices.reduce((a, b) => (b.price > a.price ? b : a));
    const doc = {
      id: sk.id,
      name: sk.name,
      slug: sk.slug,
      permalink: `${home}/product/${sk.slug}/`,
      ...this.dates('date_created', sk.created),
      ...this.dates('date_modified', eff.modified),
      type: spec.variable ? 'variable' : 'simple',
      status: eff.status,
      featured: spec.featured,
      catalog_visibility: 'visible',
      description: `<p>The ${sk.name} is made of ${metal.purity} fine ${metal.key}.</p>\n<ul>\n`
        + `<li>Metal: ${metal.label}</li>\n<li>Purity: ${metal.purity}</li>\n<li>Maker: ${spec.maker}</li>\n</ul>\n`,
      short_description: `<p>${metal.label} ${form.key}, ${metal.purity} fine.</p>\n`,
      sku: sk.sku,
      price: money(lowest.price),
      regular_price: spec.variable ? '' : money(lowest.regular),
      sale_price: spec.variable || lowest.sale === null ? '' : money(lowest.sale),
      date_on_sale_from: null, date_on_sale_from_gmt: null, date_on_sale_to: null, date_on_sale_to_gmt: null,
      on_sale: spec.onSale,
      purchasable: true,
      total_sales: spec.totalSales,
      virtual: false, downloadable: false, downloads: [], download_limit: -1, download_expiry: -1,
      external_url: '', button_text: '',
      tax_status: 'taxable', tax_class: '',
      ...this.stockFields(sk, eff.revision),
      backorders: 'no', backorders_allowed: false, backordered: false, low_stock_amount: null,
      sold_individually: false,
      weight: kilograms(WEIGHTS[spec.weights[0]].oz),
      dimensions: { length: '', width: '', height: '' },
      shipping_required: true, shipping_taxable: true, shipping_class: '', shipping_class_id: 0,
      reviews_allowed: true, average_rating: '0.00', rating_count: 0,
      upsell_ids: [], cross_sell_ids: [], parent_id: 0, purchase_note: '',
      categories: spec.bestseller ? [sk.category, BESTSELLER] : [sk.category],
      tags: [],
      images: [this.image(sk, home)],
      attributes: this.productAttributes(sk),
      default_attributes: [],
      variations: Array.from({ length: sk.varCount }, (_, i) => sk.id + i + 1),
      grouped_products: [],
      menu_order: 0,
      price_html: spec.variable && highest.price !== lowest.price
        ? `${priceHtml(lowest.price)} &ndash; ${priceHtml(highest.price)}` : priceHtml(lowest.price),
      related_ids: [],
      meta_data: [
        { id: sk.id * 10 + 1, key: '_goldsphere_metal', value: metal.key },
        { id: sk.id * 10 + 2, key: '_goldsphere_product_type', value: form.key },
        { id: sk.id * 10 + 3, key: '_purity', value: metal.purity },
      ],
      has_options: spec.variable,
      post_password: '',
      global_unique_id: '',
      _links: this.links(home, 'products', sk.id),
    };
    if (this.bad.bad_price.has(sk.id)) Object.assign(doc, { price: 'abc', regular_price: 'abc', sale_price: '' });
    if (this.bad.missing_name.has(sk.id)) delete doc.name;
    return doc;
  }

  // One variation as GET /products/{id}/variations answers it.
  variationDoc(parent, k, home) {
    const eff = this.effective(parent);
    const spec = parent.spec;
    const weight = WEIGHTS[spec.weights[k - 1]];
    const p = this.priceCents(parent, k, eff.revision);
    const id = parent.id + k;
    const doc = {
      id,
      ...this.dates('date_created', parent.created),
      ...this.dates('date_modified', eff.modified),
      description: '',
      permalink: `${home}/product/${parent.slug}/?attribute_pa_weight=${slugify(weight.label)}`,
      sku: parent.sku ? `${parent.sku}-${weight.code}` : '',
      price: money(p.price),
      regular_price: money(p.regular),
      sale_price: p.sale === null ? '' : money(p.sale),
      date_on_sale_from: null, date_on_sale_from_gmt: null, date_on_sale_to: null, date_on_sale_to_gmt: null,
      on_sale: spec.onSale,
      status: 'publish',
      purchasable: true, virtual: false, downloadable: false, downloads: [], download_limit: -1,
      download_expiry: -1, tax_status: 'taxable', tax_class: '',
      ...this.stockFields(parent, eff.revision),
      backorders: 'no', backorders_allowed: false, backordered: false, low_stock_amount: null,
      weight: kilograms(weight.oz),
      dimensions: { length: '', width: '', height: '' },
      shipping_class: '', shipping_class_id: 0,
      image: this.image(parent, home),
      attributes: [{ id: 2, name: 'Weight', slug: 'pa_weight', option: weight.label }],
      menu_order: k,
      meta_data: [{ id: id * 10 + 1, key: '_goldsphere_weight_oz', value: String(weight.oz) }],
      name: `${parent.name} - ${weight.label}`,
      type: 'variation',
      parent_id: parent.id,
      _links: {
        ...this.links(home, `products/${parent.id}/variations`, id),
        up: [{ href: `${home}/wp-json/wc/v3/products/${parent.id}` }],
      },
    };
    if (this.bad.bad_price.has(parent.id) || this.bad.bad_price.has(id)) {
      Object.assign(doc, { price: 'abc', regular_price: 'abc', sale_price: '' });
    }
    return doc;
  }

  // A variation as GET /products/{variation id} answers it: product-shaped.
  variationAsProductDoc(parent, k, home) {
    const v = this.variationDoc(parent, k, home);
    const eff = this.effective(parent);
    return {
      id: v.id, name: v.name, slug: `${parent.slug}-${slugify(v.attributes[0].option)}`, permalink: v.permalink,
      date_created: v.date_created, date_created_gmt: v.date_created_gmt,
      date_modified: v.date_modified, date_modified_gmt: v.date_modified_gmt,
      type: 'variation', status: v.status, featured: false, catalog_visibility: 'visible',
      description: '', short_description: '', sku: v.sku, price: v.price, regular_price: v.regular_price,
      sale_price: v.sale_price, on_sale: v.on_sale, purchasable: true, total_sales: 0,
      virtual: false, downloadable: false, tax_status: 'taxable', tax_class: '',
      ...this.stockFields(parent, eff.revision),
      parent_id: parent.id, categories: [], tags: [], images: [v.image],
      attributes: v.attributes, variations: [], meta_data: v.meta_data,
      _links: this.links(home, 'products', v.id),
    };
  }

  // Variation skeletons of a product, for the variations list.
  variationsOf(parent) {
    const eff = this.effective(parent);
    return Array.from({ length: parent.varCount }, (_, i) => ({
      kind: 'variation', id: parent.id + i + 1, k: i + 1, parent, created: parent.created,
      modified: eff.modified, status: 'publish', name: parent.name, slug: parent.slug,
      sku: parent.sku, menuOrder: i + 1,
    }));
  }

  links(home, base, id) {
    return {
      self: [{ href: `${home}/wp-json/wc/v3/${base}/${id}` }],
      collection: [{ href: `${home}/wp-json/wc/v3/${base}` }],
    };
  }

  // The lines of an order, drawn from its own random stream.
  orderLines(sk, r) {
    const lines = [];
    const count = r.weighted([[1, 50], [2, 30], [3, 15], [4, 5]]);
    const available = Math.max(1, sk.productsAvailable);
    for (let l = 0; l < count && this.products.length; l++) {
      const product = this.products[r.int(available)];
      const k = product.varCount ? 1 + r.int(product.varCount) : 0;
      const unit = this.priceCents(product, k, 0).price;
      const quantity = 1 + r.int(unit > 100000 ? 2 : 5);
      lines.push({ product, k, unit, quantity });
    }
    return lines;
  }

  orderDoc(sk, home) {
    const eff = this.effective(sk);
    const r = rngFor(this.seed, 'order-doc', sk.index);
    const who = customer(sk.customer);
    const currencyRoll = r.next();
    const upper = currencyRoll < 0.9 ? 'EUR' : 'USD';
    const currency = currencyRoll < 0.85 || (currencyRoll >= 0.9 && currencyRoll < 0.95)
      ? upper : (currencyRoll < 0.9 ? 'eur' : 'usd');
    const coupon = r.chance(0.15) ? r.pick(['welcome10', 'treue10', 'silber10']) : null;
    const insurance = r.chance(0.2);
    const payment = r.weighted([[['stripe', 'Credit Card (Stripe)'], 50], [['paypal', 'PayPal'], 30],
      [['bacs', 'Direct bank transfer'], 20]]);
    const createdVia = r.weighted([['checkout', 90], ['admin', 7], ['rest-api', 3]]);
    const lines = this.orderLines(sk, r);
    const itemId = (n) => sk.index * 10 + 1 + n;
    const orderKey = `wc_order_${r.chars(13, ALNUM)}`;
    const transaction = payment[0] === 'stripe' ? `pi_${r.chars(24, ALNUM)}`
      : payment[0] === 'paypal' ? r.chars(17, 'ABCDEFGHJKLMNPRSTUVWXYZ0123456789') : '';
    const note = r.weighted([['', 85], ['Bitte diskret verpacken.', 8], ['Lieferung an Nachbarn möglich.', 7]]);
    const cartHash = r.chars(32, HEX);
    const ip = `192.0.2.${1 + r.int(254)}`;

    let itemsTotal = 0;
    let discount = 0;
    let discountTax = 0;
    let cartTax = 0;
    const lineItems = lines.map((line, n) => {
      const subtotal = line.unit * line.quantity;
      const total = coupon ? subtotal - Math.round(subtotal * 0.1) : subtotal;
      const subtotalTax = taxOf(subtotal);
      const totalTax = taxOf(total);
      itemsTotal += total;
      discount += subtotal - total;
      discountTax += subtotalTax - totalTax;
      cartTax += totalTax;
      return this.lineItem(line, itemId(n), { subtotal, total, subtotalTax, totalTax }, home);
    });

    const fees = [];
    if (insurance) fees.push({ name: 'Versicherung', cents: 500 });
    if (eff.revision) fees.push({ name: `Handling (revision ${eff.revision})`, cents: eff.revision * 100 });
    const feeLines = fees.map((fee, n) => {
      const tax = taxOf(fee.cents);
      cartTax += tax;
      return { id: itemId(6 + n), name: fee.name, tax_class: '', tax_status: 'taxable', amount: money(fee.cents),
        total: money(fee.cents), total_tax: money(tax), taxes: [{ id: 1, total: money(tax), subtotal: '' }],
        meta_data: [] };
    });
    const feesTotal = fees.reduce((s, f) => s + f.cents, 0);

    const freeShipping = itemsTotal >= 50000;
    const shipping = freeShipping ? 0 : 990;
    const shippingTax = taxOf(shipping);
    const totalTax = cartTax + shippingTax;
    const total = itemsTotal + feesTotal + shipping + totalTax;

    const paid = PAID_STATUSES.has(eff.status)
      ? (PAID_STATUSES.has(sk.status) ? sk.created + sk.paidAfter : eff.modified) : null;
    const completed = eff.status === 'completed'
      ? (sk.status === 'completed' ? sk.modified : eff.modified) : null;
    const billing = { ...who.address, email: who.email, phone: who.phone };
    const doc = {
      id: sk.id,
      parent_id: 0,
      status: eff.status,
      currency,
      version: '9.8.5',
      prices_include_tax: false,
      ...this.dates('date_created', sk.created),
      ...this.dates('date_modified', eff.modified),
      discount_total: money(discount),
      discount_tax: money(discountTax),
      shipping_total: money(shipping),
      shipping_tax: money(shippingTax),
      cart_tax: money(cartTax),
      total: money(total),
      total_tax: money(totalTax),
      customer_id: sk.registered ? who.userId : 0,
      order_key: orderKey,
      billing,
      shipping: { ...who.address, phone: who.phone },
      payment_method: payment[0],
      payment_method_title: payment[1],
      transaction_id: paid === null ? '' : transaction,
      customer_ip_address: ip,
      customer_user_agent: 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0',
      created_via: createdVia,
      customer_note: note,
      ...this.dates('date_completed', completed),
      ...this.dates('date_paid', paid),
      cart_hash: cartHash,
      number: String(sk.id),
      meta_data: [
        { id: sk.id * 10 + 1, key: 'is_vat_exempt', value: 'no' },
        { id: sk.id * 10 + 2, key: '_wc_order_attribution_source_type', value: r.pick(['typein', 'organic', 'referral']) },
      ],
      line_items: lineItems,
      tax_lines: cartTax + shippingTax > 0 ? [{
        id: itemId(5), rate_code: 'DE-MWST.-1', rate_id: 1, label: 'MwSt.', compound: false,
        tax_total: money(cartTax), shipping_tax_total: money(shippingTax), rate_percent: 19, meta_data: [],
      }] : [],
      shipping_lines: [{
        id: itemId(4),
        method_title: freeShipping ? 'Kostenloser Versand' : 'Versicherter Versand',
        method_id: freeShipping ? 'free_shipping' : 'flat_rate',
        instance_id: freeShipping ? '2' : '1',
        total: money(shipping), total_tax: money(shippingTax),
        taxes: shippingTax ? [{ id: 1, total: money(shippingTax), subtotal: '' }] : [],
        meta_data: [{ id: itemId(4) * 10 + 1, key: 'Artikel', value: lines.map((l) => `${l.product.name} &times; ${l.quantity}`).join(', '),
          display_key: 'Artikel', display_value: lines.map((l) => `${l.product.name} &times; ${l.quantity}`).join(', ') }],
      }],
      fee_lines: feeLines,
      coupon_lines: coupon ? [{ id: itemId(9), code: coupon, discount: money(discount),
        discount_tax: money(discountTax), meta_data: [] }] : [],
      refunds: sk.refundId && eff.status === 'refunded'
        ? [{ id: sk.refundId, reason: '', total: money(-total) }] : [],
      payment_url: `${home}/checkout/order-pay/${sk.id}/?pay_for_order=true&key=${orderKey}`,
      is_editable: ['pending', 'on-hold', 'failed'].includes(eff.status),
      needs_payment: ['pending', 'failed'].includes(eff.status),
      needs_processing: true,
      currency_symbol: currency.toUpperCase() === 'EUR' ? '€' : '$',
      _links: {
        ...this.links(home, 'orders', sk.id),
        ...(sk.registered ? { customer: [{ href: `${home}/wp-json/wc/v3/customers/${who.userId}` }] } : {}),
      },
    };
    this.breakOrder(doc, sk.id);
    return doc;
  }

  lineItem(line, id, amounts, home) {
    const { product, k, quantity } = line;
    const variation = k ? WEIGHTS[product.spec.weights[k - 1]] : null;
    const sku = !product.sku ? '' : variation ? `${product.sku}-${variation.code}` : product.sku;
    return {
      id,
      name: variation ? `${product.name} - ${variation.label}` : product.name,
      product_id: product.id,
      variation_id: k ? product.id + k : 0,
      quantity,
      tax_class: '',
      subtotal: money(amounts.subtotal),
      subtotal_tax: money(amounts.subtotalTax),
      total: money(amounts.total),
      total_tax: money(amounts.totalTax),
      taxes: [{ id: 1, total: money(amounts.totalTax), subtotal: money(amounts.subtotalTax) }],
      meta_data: variation ? [{ id: id * 10 + 1, key: 'pa_weight', value: slugify(variation.label),
        display_key: 'Weight', display_value: variation.label }] : [],
      sku,
      price: amounts.total / 100 / quantity,
      image: { id: String(product.id + product.varCount + 1),
        src: `${home}/wp-content/uploads/${product.slug}.jpg` },
      parent_name: variation ? product.name : null,
    };
  }

  // bad_records for orders: documented in server.js.
  breakOrder(doc, id) {
    if (this.bad.missing_email.has(id)) delete doc.billing.email;
    if (this.bad.unknown_product.has(id) && doc.line_items.length) {
      Object.assign(doc.line_items[0], { product_id: UNKNOWN_PRODUCT_ID, variation_id: 0, sku: null,
        image: { id: '', src: '' }, parent_name: null });
    }
    if (this.bad.bad_price.has(id)) {
      doc.total = '12,3x';
      if (doc.line_items.length) doc.line_items[0].price = 'abc';
    }
  }
}

module.exports = { Catalogue, ORDER_STATUSES, customer, CUSTOMERS, UNKNOWN_PRODUCT_ID, GENERATED_UNTIL };
