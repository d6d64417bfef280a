//! The demo's table and invented sample customers.

/// The table `rules/customers.toml` expects: encrypted columns are `bytea`.
pub(super) const SETUP_SQL: &str = "\
CREATE TABLE public.customers (
    id          bigserial PRIMARY KEY,
    full_name   text NOT NULL,
    email       bytea,
    ssn         bytea,
    phone       bytea,
    birth_date  bytea,
    card_number bytea
);
GRANT SELECT, INSERT, UPDATE, DELETE ON public.customers TO admin;
GRANT USAGE, SELECT ON SEQUENCE public.customers_id_seq TO admin;
GRANT SELECT ON public.customers TO support, analyst;
";

/// Columns shown in the comparison, in table order.
pub(super) const COLUMNS: [&str; 6] = [
    "full_name",
    "email",
    "ssn",
    "phone",
    "birth_date",
    "card_number",
];

/// One sample customer: name, email, SSN, phone, birth date, card number.
/// Invented people; phone numbers in the 555-01xx fiction range, card numbers
/// from the card networks' published test numbers.
pub(super) type Customer = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    Option<&'static str>,
);

#[rustfmt::skip]
pub(super) const CUSTOMERS: [Customer; 20] = [
    ("Alice Smith", "alice@example.com", "123-45-6789", Some("+1-202-555-0143"), "1984-07-19", Some("4111 1111 1111 1111")),
    ("Bob Johnson", "bob.johnson@example.org", "987-65-4321", Some("+1-415-555-0198"), "1990-01-02", Some("5555 5555 5555 4444")),
    ("Carmen Díaz", "carmen.diaz@example.net", "219-09-9999", Some("+1-305-555-0111"), "1977-11-30", Some("4012 8888 8888 1881")),
    ("Seán O'Brien", "sean.obrien@example.com", "078-05-1120", Some("+1-617-555-0124"), "1969-03-17", Some("3782 822463 10005")),
    ("Yuki Tanaka", "yuki.tanaka@example.org", "512-34-8821", Some("+1-206-555-0167"), "1995-05-05", Some("3530 1113 3330 0000")),
    ("Oluwaseun Adeyemi", "seun.adeyemi@example.net", "333-22-4444", Some("+1-713-555-0182"), "1988-09-12", Some("6011 1111 1111 1117")),
    ("Priya Natarajan", "priya.n@example.com", "401-77-2390", Some("+1-408-555-0135"), "1992-12-24", Some("5105 1051 0510 5100")),
    ("Mohammed Al-Farsi", "m.alfarsi@example.org", "655-10-4417", Some("+1-312-555-0156"), "1981-02-28", Some("4000 0566 5566 5556")),
    ("Zoë Müller", "zoe.mueller@example.net", "287-65-0031", Some("+1-646-555-0109"), "2000-08-08", Some("4242 4242 4242 4242")),
    ("Lars Johansson", "lars.j@example.com", "190-44-7812", Some("+1-612-555-0173"), "1973-06-21", Some("5200 8282 8282 8210")),
    ("Grace Kim", "grace.kim@example.org", "743-21-9065", Some("+1-213-555-0120"), "1999-10-31", Some("2223 0031 2200 3222")),
    ("Diego Fernández", "diego.fernandez@example.net", "562-80-1147", Some("+1-512-555-0188"), "1986-04-15", Some("3714 496353 98431")),
    ("Fatima Zahra Benali", "fz.benali@example.com", "318-56-7702", Some("+1-718-555-0146"), "1991-07-04", Some("6011 0009 9013 9424")),
    ("Nguyễn Văn An", "an.nguyen@example.org", "604-93-2258", Some("+1-714-555-0191"), "1979-01-23", Some("3566 0020 2036 0505")),
    ("Emily Clarke", "emily.clarke@example.net", "455-12-9087", Some("+1-503-555-0130"), "2002-03-09", Some("4000 0000 0000 0077")),
    ("Tomasz Kowalski", "t.kowalski@example.com", "271-38-5519", Some("+1-773-555-0177"), "1983-11-11", Some("5425 2334 3010 9903")),
    ("Aisha Bello", "aisha.bello@example.org", "689-02-3346", Some("+1-404-555-0114"), "1997-06-30", Some("4000 0025 0000 3155")),
    ("Liam Murphy", "liam.murphy@example.net", "526-71-0094", None, "1975-09-01", Some("6200 0000 0000 0005")),
    ("Sofia Rossi", "sofia.rossi@example.com", "132-66-4870", Some("+1-917-555-0152"), "1994-02-14", None),
    ("Chen Wei", "chen.wei@example.org", "248-90-6613", Some("+1-415-555-0103"), "1987-08-27", Some("3056 9309 0259 04")),
];
