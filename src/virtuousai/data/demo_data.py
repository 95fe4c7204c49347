"""A realistic, reproducible e-commerce SQLite database for the offline demo.

``generate_shop_database(path)`` writes ``customers``, ``products``, ``orders`` and ``order_items`` (about 380k rows
with the defaults, in ~5 s here). The same seed always gives the same database. The data has what a real shop
export has, so the demo ETL has something to clean: test orders, cancelled orders, a few orders without a customer,
mixed-case emails, seasonality and a long tail of products.

``add_orders(path, count)`` appends newer orders (ids and timestamps after the last ones), which is what an
incremental ``dlt_extract`` re-run picks up.

    python -m virtuousai.data.demo_data ./var/demo/shop.db
"""

from __future__ import annotations

import itertools
import math
import random
import sqlite3
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

SCHEMA = """
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    country TEXT NOT NULL,
    city TEXT NOT NULL,
    segment TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    sku TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    price REAL NOT NULL,
    cost REAL NOT NULL,
    active INTEGER NOT NULL
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER REFERENCES customers (id),
    status TEXT NOT NULL,
    channel TEXT NOT NULL,
    currency TEXT NOT NULL,
    shipping REAL NOT NULL,
    ordered_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE order_items (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders (id),
    product_id INTEGER NOT NULL REFERENCES products (id),
    quantity INTEGER NOT NULL,
    unit_price REAL NOT NULL,
    discount REAL NOT NULL
);
CREATE INDEX orders_updated_at ON orders (updated_at);
CREATE INDEX order_items_order_id ON order_items (order_id);
"""

COUNTRIES = {
    "US": ["New York", "Austin", "Seattle", "Chicago", "Denver"],
    "GB": ["London", "Manchester", "Leeds"],
    "DE": ["Berlin", "Munich", "Hamburg"],
    "FR": ["Paris", "Lyon", "Marseille"],
    "CA": ["Toronto", "Vancouver"],
    "AU": ["Sydney", "Melbourne"],
}
CATEGORIES = {  # category: (price range, products share)
    "Books": ((6, 45), 0.22),
    "Electronics": ((25, 900), 0.14),
    "Home & Kitchen": ((8, 250), 0.18),
    "Toys & Games": ((5, 120), 0.12),
    "Sports": ((10, 300), 0.12),
    "Beauty": ((4, 90), 0.12),
    "Garden": ((6, 400), 0.10),
}
ADJECTIVES = ["Classic", "Ultra", "Eco", "Smart", "Mini", "Pro", "Deluxe", "Travel", "Everyday", "Premium"]
NOUNS = {
    "Books": ["Novel", "Cookbook", "Atlas", "Guide", "Anthology"],
    "Electronics": ["Headphones", "Speaker", "Charger", "Camera", "Tablet"],
    "Home & Kitchen": ["Pan", "Kettle", "Blender", "Lamp", "Knife Set"],
    "Toys & Games": ["Puzzle", "Board Game", "Robot Kit", "Plush", "Card Game"],
    "Sports": ["Yoga Mat", "Racket", "Bottle", "Backpack", "Dumbbells"],
    "Beauty": ["Serum", "Shampoo", "Lip Balm", "Face Mask", "Sunscreen"],
    "Garden": ["Hose", "Planter", "Shears", "Seed Kit", "Bird Feeder"],
}
FIRST = ["Ava", "Liam", "Mia", "Noah", "Emma", "Lucas", "Olivia", "Leo", "Zoe", "Ethan", "Nina", "Omar", "Ines", "Yuki"]
LAST = ["Smith", "Garcia", "Müller", "Martin", "Brown", "Rossi", "Tanaka", "Dubois", "Wilson", "Nowak", "Silva", "Kim"]
STATUSES = ["delivered"] * 70 + ["shipped"] * 12 + ["paid"] * 6 + ["refunded"] * 5 + ["cancelled"] * 5 + ["test"] * 2
CHANNELS = ["web"] * 6 + ["mobile"] * 3 + ["marketplace"]
DISCOUNTS = [0.0] * 8 + [0.1, 0.2]
SHIPPING = [0, 0, 4.99, 9.99]
# Items per order and quantity per item, with their weights made cumulative once (``choices`` would on every call).
ITEMS_PER_ORDER, ITEMS_CUM_WEIGHTS = [1, 2, 3, 4, 5], list(itertools.accumulate([45, 28, 15, 8, 4]))
QUANTITIES, QUANTITY_CUM_WEIGHTS = [1, 2, 3], list(itertools.accumulate([80, 15, 5]))
START = datetime(2024, 1, 1, tzinfo=UTC)
Row = tuple[object, ...]
DAYS = 365


@dataclass(frozen=True)
class ShopSummary:
    path: Path
    customers: int
    products: int
    orders: int
    order_items: int

    @property
    def rows(self) -> int:
        return self.customers + self.products + self.orders + self.order_items


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _customers(rng: random.Random, count: int) -> list[Row]:
    rows: list[Row] = []
    for customer_id in range(1, count + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        country = rng.choices(list(COUNTRIES), weights=[40, 15, 15, 12, 10, 8])[0]
        email = f"{first}.{last}{customer_id}@example.com"
        if rng.random() < 0.05:  # the messy part of a real export
            email = email.upper()
        created = START - timedelta(days=rng.randint(0, 3 * 365))
        segment = rng.choices(["consumer", "business", "vip"], weights=[85, 12, 3])[0]
        rows.append(
            (customer_id, f"{first} {last}", email, country, rng.choice(COUNTRIES[country]), segment, _iso(created))
        )
    return rows


def _products(rng: random.Random, count: int) -> list[Row]:
    rows: list[Row] = []
    categories = list(CATEGORIES)
    weights = [share for _, share in CATEGORIES.values()]
    for product_id in range(1, count + 1):
        category = rng.choices(categories, weights=weights)[0]
        (low, high), _ = CATEGORIES[category]
        price = round(math.exp(rng.uniform(math.log(low), math.log(high))), 2)
        name = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS[category])}"
        rows.append(
            (
                product_id,
                f"SKU-{product_id:06d}",
                name,
                category,
                price,
                round(price * rng.uniform(0.35, 0.7), 2),
                int(rng.random() > 0.03),
            )
        )
    return rows


def _day_weight(day: datetime) -> float:
    return 1.0 + (0.7 if day.month in (11, 12) else 0.0) + (0.3 if day.weekday() >= 5 else 0.0)


def _order_rows(
    rng: random.Random,
    first_order_id: int,
    first_item_id: int,
    count: int,
    customers: int,
    products: list[Row],
    start: datetime,
    days: float,
) -> tuple[list[Row], list[Row]]:
    orders: list[Row] = []
    items: list[Row] = []
    item_id = first_item_id
    # A long tail of products, as cumulative weights: ``choices`` would sum the weights again on every call.
    popularity = list(itertools.accumulate(1.0 / (rank + 1) ** 0.8 for rank in range(len(products))))
    # Seasonality: busier in November and December and at weekends; ids follow time.
    day_count = max(1, math.ceil(days))
    weights = [_day_weight(start + timedelta(days=d)) for d in range(day_count)]
    offsets = sorted(d + rng.random() for d in rng.choices(range(day_count), weights=weights, k=count))
    for index in range(count):
        order_id = first_order_id + index
        ordered_at = start + timedelta(days=offsets[index] * days / day_count)
        status = rng.choice(STATUSES)
        customer_id: int | None = rng.randint(1, customers) if rng.random() > 0.005 else None
        updated_at = ordered_at + timedelta(hours=rng.uniform(0, 72))
        orders.append(
            (
                order_id,
                customer_id,
                status,
                rng.choice(CHANNELS),
                "USD",
                round(rng.choice(SHIPPING), 2),
                _iso(ordered_at),
                _iso(updated_at),
            )
        )
        for product in rng.choices(
            products, cum_weights=popularity, k=rng.choices(ITEMS_PER_ORDER, cum_weights=ITEMS_CUM_WEIGHTS)[0]
        ):
            discount = rng.choice(DISCOUNTS)
            quantity = rng.choices(QUANTITIES, cum_weights=QUANTITY_CUM_WEIGHTS)[0]
            items.append((item_id, order_id, product[0], quantity, product[4], discount))
            item_id += 1
    return orders, items


def generate_shop_database(
    path: Path, *, seed: int = 42, customers: int = 20_000, products: int = 1_000, orders: int = 120_000
) -> ShopSummary:
    """Write a fresh shop database at ``path`` (replacing any file there). Same arguments → same bytes of data."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    product_rows = _products(rng, products)
    order_rows, item_rows = _order_rows(rng, 1, 1, orders, customers, product_rows, START, DAYS)
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
        db.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?)", _customers(rng, customers))
        db.executemany("INSERT INTO products VALUES (?, ?, ?, ?, ?, ?, ?)", product_rows)
        db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?)", order_rows)
        db.executemany("INSERT INTO order_items VALUES (?, ?, ?, ?, ?, ?)", item_rows)
    return ShopSummary(path, customers, products, len(order_rows), len(item_rows))


def add_orders(path: Path, count: int = 500, *, seed: int = 7) -> ShopSummary:
    """Append ``count`` newer orders (after the last id and timestamp): new rows for an incremental extract."""
    rng = random.Random(seed)
    with sqlite3.connect(path) as db:
        last_order, last_item = db.execute("SELECT max(id), (SELECT max(id) FROM order_items) FROM orders").fetchone()
        (last_time,) = db.execute("SELECT max(updated_at) FROM orders").fetchone()
        customers = db.execute("SELECT count(*) FROM customers").fetchone()[0]
        product_rows = db.execute("SELECT * FROM products ORDER BY id").fetchall()
        start = datetime.strptime(last_time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) + timedelta(hours=1)
        order_rows, item_rows = _order_rows(
            rng, last_order + 1, last_item + 1, count, customers, product_rows, start, 1
        )
        db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?)", order_rows)
        db.executemany("INSERT INTO order_items VALUES (?, ?, ?, ?, ?, ?)", item_rows)
    return ShopSummary(path, 0, 0, len(order_rows), len(item_rows))


if __name__ == "__main__":  # pragma: no cover
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "./var/demo/shop.db")
    summary = generate_shop_database(target)
    print(f"{summary.path}: {summary.rows} rows ({summary.orders} orders, {summary.order_items} order items)")
