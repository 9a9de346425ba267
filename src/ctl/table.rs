//! Tables for `mqttd ctl`: columns padded to their widest cell, one line per row.

use serde_json::Value;

/// Renders rows under a header, left-aligned.
pub fn render(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(header.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

/// A JSON value as a cell: strings bare, null empty.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn rows(list: &Value) -> &[Value] {
    list.get("data")
        .unwrap_or(list)
        .as_array()
        .map_or(&[], |v| v.as_slice())
}

fn table(value: &Value, columns: &[(&str, &str)]) -> String {
    let header: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
    let body = rows(value)
        .iter()
        .map(|row| columns.iter().map(|(_, key)| cell(&row[*key])).collect())
        .collect();
    render(&header, body)
}

pub fn clients(v: &Value) -> String {
    table(
        v,
        &[
            ("CLIENT ID", "clientid"),
            ("USER", "username"),
            ("TRANSPORT", "transport"),
            ("ADDRESS", "ip_address"),
            ("PORT", "port"),
            ("CONNECTED", "connected"),
            ("PROTO", "proto_ver"),
            ("SUBS", "subscriptions_cnt"),
            ("INFLIGHT", "inflight_cnt"),
            ("QUEUED", "mqueue_len"),
        ],
    )
}

pub fn subscriptions(v: &Value) -> String {
    table(
        v,
        &[
            ("CLIENT ID", "clientid"),
            ("TOPIC", "topic"),
            ("QOS", "qos"),
            ("NL", "nl"),
            ("RAP", "rap"),
            ("RH", "rh"),
        ],
    )
}

pub fn topics(v: &Value) -> String {
    table(v, &[("TOPIC", "topic"), ("SUBSCRIPTIONS", "subscriptions")])
}

pub fn retained(v: &Value) -> String {
    table(
        v,
        &[
            ("TOPIC", "topic"),
            ("QOS", "qos"),
            ("BYTES", "payload_size"),
            ("FROM", "from_clientid"),
        ],
    )
}

pub fn listeners(v: &Value) -> String {
    table(
        v,
        &[
            ("ID", "id"),
            ("TYPE", "type"),
            ("BIND", "bind"),
            ("CONNECTIONS", "current_connections"),
        ],
    )
}

/// An object as `key  value` lines (nested objects flattened with dots), sorted by key.
pub fn object(v: &Value) -> String {
    fn flatten(prefix: &str, v: &Value, out: &mut Vec<Vec<String>>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
            other => out.push(vec![prefix.to_string(), cell(other)]),
        }
    }
    let mut out = Vec::new();
    flatten("", v, &mut out);
    out.sort();
    render(&["KEY", "VALUE"], out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn columns_are_padded_to_the_widest_cell() {
        let v = json!({"data": [
            {"clientid": "a", "topic": "x/y", "qos": 1, "nl": 0, "rap": 0, "rh": 0},
            {"clientid": "longer-id", "topic": "z", "qos": 0, "nl": 1, "rap": 0, "rh": 2},
        ]});
        assert_eq!(
            super::subscriptions(&v),
            "CLIENT ID  TOPIC  QOS  NL  RAP  RH\n\
             a          x/y    1    0   0    0\n\
             longer-id  z      0    1   0    2"
        );
        assert_eq!(
            super::object(&json!({"b": 1, "a": {"c": "x"}})),
            "KEY  VALUE\na.c  x\nb    1"
        );
    }
}
