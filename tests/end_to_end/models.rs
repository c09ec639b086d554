//! Training, the model registry and `predict` end to end: a landed table with a learnable
//! signal, several algorithms, deterministic retraining, aliases, `ops.model_versions`,
//! inline scoring with explanations, and a tampered artifact that is refused.

use crate::fixtures::{ChurnModel, CustomerSource, ProjectFile};
use crate::support::Workspace;

/// 600 customers; churn depends on usage and contract with some noise, so a model can
/// learn it but not perfectly.
fn customers_csv() -> String {
    let mut state: u64 = 7;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    let mut csv = String::from("customer_id,logins,revenue,contract,newsletter,churned,spend\n");
    for i in 0..600 {
        let logins = (next() * 40.0).floor();
        let revenue = (next() * 1000.0).round();
        let contract = ["monthly", "yearly", "none"][(next() * 3.0) as usize % 3];
        let newsletter = next() < 0.5;
        let risk = 1.5 - logins / 10.0
            + if contract == "monthly" { 1.0 } else { -0.5 }
            + (next() - 0.5) * 2.0;
        let churned = risk > 0.0;
        let spend = 20.0 + logins * 3.0 + (next() - 0.5) * 10.0;
        let logins_text = if i % 50 == 0 {
            String::new()
        } else {
            logins.to_string()
        };
        csv.push_str(&format!(
            "C{i:04},{logins_text},{revenue},{contract},{newsletter},{churned},{spend:.2}\n"
        ));
    }
    csv
}

/// The other models of the registry tests, next to the shared churn model.
const MODELS: &str = r#"
[[model]]
name = "churn_forest"
task = "classification"
algorithm = "random_forest"
params = { n_trees = 25, max_depth = 6 }
training_table = "curated.customers@1"
label = "churned"
key = ["customer_id"]
[model.features]
logins = "numeric"
contract = "categorical"

[[model]]
name = "churn_tree"
task = "classification"
algorithm = "decision_tree"
training_table = "curated.customers"
label = "churned"
[model.features]
logins = "numeric"
contract = "categorical"

[[model]]
name = "spend"
task = "regression"
algorithm = "linear_regression"
training_table = "curated.customers"
label = "spend"
key = ["customer_id"]
[model.features]
logins = "numeric"
contract = "categorical"

[[model]]
name = "spend_boost"
task = "regression"
algorithm = "gradient_boosting"
params = { n_estimators = 40, max_depth = 3 }
training_table = "curated.customers"
label = "spend"
key = ["customer_id"]
[model.features]
logins = "numeric"
contract = "categorical"

[[model]]
name = "churn_boost"
task = "classification"
algorithm = "gradient_boosting"
params = { n_estimators = 200, learning_rate = 0.1, max_leaves = 8, early_stopping_rounds = 10 }
training_table = "curated.customers"
label = "churned"
key = ["customer_id"]
[model.features]
logins = "numeric"
contract = "categorical"

[[model]]
name = "contract_boost"
task = "classification"
algorithm = "gradient_boosting"
params = { n_estimators = 30 }
training_table = "curated.customers"
label = "contract"
key = ["customer_id"]
[model.features]
logins = "numeric"
churned = "boolean"

[[model]]
name = "spend_forest"
task = "regression"
algorithm = "random_forest"
params = { n_trees = 10 }
training_table = "curated.customers"
label = "spend"
key = ["customer_id"]
[model.features]
logins = "numeric"
"#;

pub(crate) fn project() -> Workspace {
    let ws = Workspace::init();
    ProjectFile::default()
        .source(
            CustomerSource::new("extracts/customers.csv", "curated.customers").columns(&[
                ("logins", "float"),
                ("revenue", "float"),
                ("contract", "string"),
                ("newsletter", "boolean"),
                ("churned", "boolean"),
                ("spend", "float"),
            ]),
        )
        .model(ChurnModel::new("logistic_regression", "curated.customers").setting("seed = 7"))
        .with(MODELS)
        .append_to(&ws);
    ws.write_file("extracts/customers.csv", &customers_csv());
    ws.run(&["ingest"]).ok();
    ws
}

fn metric(line: &str, name: &str) -> f64 {
    let at = line.find(&format!("{name} ")).unwrap() + name.len() + 1;
    line[at..]
        .split([',', ' ', '\n'])
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn models_train_register_and_move_aliases_and_tampering_is_refused() {
    let ws = project();
    let out = ws.run(&["train", "churn"]).ok();
    assert!(
        out.starts_with("churn:1 trained on curated.customers@1 ("),
        "{out}"
    );
    assert!(out.contains("now champion"), "{out}");
    let auc = metric(&out, "roc_auc");
    assert!(
        (0.8..1.0).contains(&auc),
        "a learnable but noisy signal: {out}"
    );
    let training: u64 = out
        .split(" (")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let held: u64 = out
        .split(" rows, ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(training + held, 600);
    assert!((80..160).contains(&held), "about 20% held out: {out}");

    // Same data version and seed: the same artifact.
    let again = ws.run(&["train", "churn"]).ok();
    assert!(again.starts_with("churn:2 trained"), "{again}");
    assert!(
        again.contains("promote it with: lakescore models promote churn 2 --alias champion"),
        "{again}"
    );
    let sha = |text: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix("artifact sha256 "))
            .unwrap()
            .to_string()
    };
    assert_eq!(sha(&out), sha(&again));

    let forest = ws.run(&["train", "churn_forest"]).ok();
    assert!(metric(&forest, "roc_auc") > 0.75, "{forest}");
    let tree = ws.run(&["train", "churn_tree"]).ok();
    assert!(metric(&tree, "accuracy") > 0.7, "{tree}");
    let spend = ws.run(&["train", "spend"]).ok();
    assert!(
        metric(&spend, "r2") > 0.9,
        "spend is nearly linear in logins: {spend}"
    );
    let spend_forest = ws.run(&["train", "spend_forest"]).ok();
    assert!(metric(&spend_forest, "r2") > 0.8, "{spend_forest}");
    let churn_boost = ws.run(&["train", "churn_boost"]).ok();
    assert!(metric(&churn_boost, "roc_auc") > 0.8, "{churn_boost}");
    let contract_boost = ws.run(&["train", "contract_boost"]).ok();
    assert!(
        contract_boost.contains("contract_boost:1 trained"),
        "{contract_boost}"
    );
    // Soft votes: a forest of 25 trees gives many more than the 26 probabilities hard
    // votes can; boosted probabilities and explanations for a row missing a number.
    assert_eq!(
        ws.csv(
            "SELECT count(DISTINCT predict('churn_forest', logins, contract)['probability']) > 26 AS soft, \
             min(predict('churn_boost', logins, contract)['probability']) > 0 AS above_zero, \
             max(predict('churn_boost', logins, contract)['probability']) < 1 AS below_one \
             FROM curated.customers"
        ),
        "soft,above_zero,below_one\ntrue,true,true\n"
    );
    assert_eq!(
        ws.csv(
            "SELECT p['probability'] > 0 AND p['probability'] < 1 AS scored, \
             array_length(p['top_features']) AS explained \
             FROM (SELECT predict('churn_boost', NULL, 'monthly') AS p)"
        ),
        "scored,explained\ntrue,2\n",
        "a missing number goes down the side training sent missing values"
    );
    let three = ws.csv(
        "SELECT p['prediction'] AS contract, p['probability'] = p['confidence'] AS of_predicted, \
         array_length(p['top_features']) AS explained \
         FROM (SELECT predict('contract_boost', 5, true) AS p)",
    );
    let fields: Vec<&str> = three.lines().nth(1).unwrap().split(',').collect();
    assert!(
        ["monthly", "yearly", "none"].contains(&fields[0]),
        "{three}"
    );
    assert_eq!(&fields[1..], ["true", "2"], "{three}");
    let spend_boost = ws.run(&["train", "spend_boost"]).ok();
    assert!(metric(&spend_boost, "r2") > 0.8, "{spend_boost}");
    assert_eq!(
        ws.csv("SELECT array_length(predict('spend_boost', 10, 'monthly')['top_features']) AS explained"),
        "explained\n2\n"
    );

    let listed = ws.run(&["models", "list", "churn"]).ok();
    assert!(
        listed.contains("churn:1 [champion]  logistic_regression on curated.customers@1"),
        "{listed}"
    );
    ws.run(&["models", "promote", "churn", "2"]).ok();
    ws.run(&["models", "promote", "churn", "1", "--alias", "challenger"])
        .ok();
    assert_eq!(
        ws.csv("SELECT model, version, aliases, training_table_version FROM ops.model_versions WHERE model = 'churn' ORDER BY version"),
        "model,version,aliases,training_table_version\nchurn,1,challenger,1\nchurn,2,champion,1\n"
    );
    let rolled = ws.run(&["models", "rollback", "churn"]).ok();
    assert_eq!(rolled, "churn: champion rolled back to version 1\n");
    let manifest: serde_json::Value =
        serde_json::from_str(&ws.run(&["models", "show", "churn"]).ok()).unwrap();
    assert_eq!(manifest["version"], 1);
    assert_eq!(manifest["encoded_features"][3], "contract=monthly");
    assert_eq!(manifest["rows"]["table_rows"], 600);
    assert_eq!(manifest["feature_profiles"][0][1]["type"], "numeric");
    assert!(
        (manifest["feature_profiles"][0][1]["null_rate"]
            .as_f64()
            .unwrap()
            - 0.02)
            .abs()
            < 0.01
    );
    assert_eq!(
        manifest["prediction_profile"]["quantiles"]
            .as_array()
            .unwrap()
            .len(),
        11
    );

    let error = ws.run(&["models", "show", "churn:9"]).fails_with(1);
    assert!(
        error.contains("model 'churn' has no version 9; it has versions 1, 2"),
        "{error}"
    );
    let error = ws.run(&["models", "show", "churn@best"]).fails_with(1);
    assert!(
        error.contains("the aliases are champion and challenger"),
        "{error}"
    );

    // Scoring inline: the champion by default, any version by number.
    let scored = ws.csv(
        "SELECT customer_id, p['prediction'] AS prediction, p['probability'] AS probability, \
         p['confidence'] AS confidence, array_length(p['top_features']) AS explained, \
         p['top_features'][1]['feature'] AS top \
         FROM (SELECT customer_id, predict('churn', logins, revenue, contract, newsletter) AS p \
               FROM curated.customers) ORDER BY customer_id LIMIT 3",
    );
    let lines: Vec<&str> = scored.lines().collect();
    assert_eq!(
        lines[0],
        "customer_id,prediction,probability,confidence,explained,top"
    );
    for line in &lines[1..] {
        let fields: Vec<&str> = line.split(',').collect();
        let probability: f64 = fields[2].parse().unwrap();
        let confidence: f64 = fields[3].parse().unwrap();
        assert_eq!(
            fields[1],
            if probability > 0.5 { "true" } else { "false" },
            "{line}"
        );
        assert!(
            (confidence - probability.max(1.0 - probability)).abs() < 1e-9,
            "{line}"
        );
        assert_eq!(fields[4], "3", "{line}");
        assert!(
            ["logins", "revenue", "contract", "newsletter"].contains(&fields[5]),
            "{line}"
        );
    }
    // The forest's vote share and a regression value; an unseen category and missing
    // values are scored with the (other) bucket and training imputation.
    let values = ws.csv(
        "SELECT predict('spend', 10, 'monthly')['prediction'] AS spend, \
         predict('churn_forest', 2, 'monthly')['probability'] AS risky, \
         predict('churn_forest', 38, 'yearly')['probability'] AS safe, \
         predict('churn', NULL, NULL, 'brand-new plan', NULL)['prediction'] IS NOT NULL AS unseen",
    );
    let fields: Vec<f64> = values
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .take(3)
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        (44.0..56.0).contains(&fields[0]),
        "spend ≈ 20 + 3 × logins: {values}"
    );
    assert!(fields[1] > 0.7 && fields[2] < 0.3, "{values}");
    assert!(values.ends_with(",true\n"), "{values}");
    let error = ws
        .run(&[
            "sql",
            "SELECT predict('churn', logins) FROM curated.customers",
        ])
        .fails_with(1);
    assert!(
        error.contains("predict('churn:1', ...) takes 4 features in this order: logins (numeric), revenue (numeric), contract (categorical), newsletter (boolean); 1 given"),
        "{error}"
    );
    let error = ws.run(&["sql", "SELECT predict('churn', contract, revenue, contract, newsletter) FROM curated.customers"]).fails_with(1);
    assert!(
        error.contains("argument 2 is Utf8View but feature 'logins' is numeric"),
        "{error}"
    );
    let error = ws
        .run(&[
            "sql",
            "SELECT predict(name, 1) FROM (SELECT 'churn' AS name)",
        ])
        .fails_with(1);
    assert!(
        error.contains("the first argument must be a model reference in quotes"),
        "{error}"
    );

    // Scoring a table version into scored.churn: once per model and input version.
    let out = ws
        .run(&["score", "churn", "--input", "curated.customers"])
        .ok();
    assert!(
        out.starts_with(
            "scored.churn <- curated.customers@1 scored with churn:1: 600 rows -> version 0"
        ),
        "{out}"
    );
    let again = ws
        .run(&["score", "churn", "--input", "curated.customers@1"])
        .ok();
    assert!(
        again.starts_with(
            "scored.churn <- curated.customers@1: already scored with churn:1, nothing added"
        ),
        "{again}"
    );
    let out = ws
        .run(&[
            "score",
            "churn:2",
            "--input",
            "curated.customers",
            "--output",
            "scored.churn",
        ])
        .ok();
    assert!(
        out.contains("scored with churn:2: 600 rows -> version 1"),
        "{out}"
    );
    assert_eq!(
        ws.csv(
            "SELECT model_version, count(*) AS n, count(DISTINCT prediction_id) AS ids, min(source_table_version) AS input, \
             min(training_table) AS trained_on, min(training_table_version) AS trained_at, \
             sum(CASE WHEN array_length(top_features) = 3 THEN 1 ELSE 0 END) AS explained \
             FROM scored.churn GROUP BY model_version ORDER BY model_version"
        ),
        "model_version,n,ids,input,trained_on,trained_at,explained\n1,600,600,1,curated.customers,1,600\n2,600,600,1,curated.customers,1,600\n"
    );
    // The same model version and input version give the same prediction ids.
    assert_eq!(
        ws.csv("SELECT count(*) AS shared FROM scored.churn a JOIN scored.churn b ON a.prediction_id = b.prediction_id AND a.model_version < b.model_version"),
        "shared\n0\n"
    );
    let lineage = ws.run(&["lineage", "scored.churn@0"]).ok();
    assert!(
        lineage.starts_with("scored.churn@0  scored by churn:1 (sha256 "),
        "{lineage}"
    );
    assert!(
        lineage.contains("curated.customers@1  landed from extracts, 1 batch(es)"),
        "{lineage}"
    );
    assert!(
        lineage.contains("extracts/customers.csv (600 rows"),
        "{lineage}"
    );

    let artifact = ws.lakehouse().join("_models/churn/1/model.json");
    let mut bytes = std::fs::read(&artifact).unwrap();
    bytes.truncate(bytes.len() - 10);
    std::fs::write(&artifact, bytes).unwrap();
    let error = ws.run(&["models", "show", "churn:1"]).fails_with(1);
    assert!(
        error.contains("churn:1: the artifact _models/churn/1/model.json has SHA-256"),
        "{error}"
    );
    assert!(
        error.contains("it was changed or truncated after registration and is refused"),
        "{error}"
    );
}

/// An artifact whose trees are malformed (a child outside its tree) but whose manifest
/// records its SHA-256, as a hand edit of both leaves it, is refused with the tree and
/// node when loaded for scoring, instead of crashing mid-scoring.
#[test]
fn a_signed_artifact_with_a_malformed_tree_is_refused_naming_tree_and_node() {
    let ws = project();
    ws.run(&["train", "spend_forest"]).ok();
    let folder = ws.lakehouse().join("_models/spend_forest/1");
    let mut artifact: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("model.json")).unwrap()).unwrap();
    artifact["compiled"]["trees"][3]["nodes"][0]["left"] = serde_json::json!(4_000_000);
    let bytes = serde_json::to_vec(&artifact).unwrap();
    std::fs::write(folder.join("model.json"), &bytes).unwrap();
    let sha = std::process::Command::new("sha256sum")
        .arg(folder.join("model.json"))
        .output()
        .unwrap();
    let sha = String::from_utf8(sha.stdout).unwrap()[..64].to_string();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("manifest.json")).unwrap()).unwrap();
    manifest["artifact_sha256"] = serde_json::json!(sha);
    std::fs::write(
        folder.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let error = ws
        .run(&["score", "spend_forest:1", "--input", "curated.customers"])
        .fails_with(1);
    assert!(
        error.contains(
            "spend_forest:1: the artifact _models/spend_forest/1/model.json cannot be scored: tree 3, node 0: its child 4000000 is outside the tree of"
        ),
        "{error}"
    );
    assert!(error.contains("Retrain the model"), "{error}");
    assert!(!error.contains("panicked"), "{error}");
    assert!(
        !ws.lakehouse().join("scored").exists(),
        "nothing was written"
    );
}

#[test]
fn model_mistakes_are_named() {
    let ws = project();
    ws.append_to_project(
        "\n[[model]]\nname = \"typo\"\ntask = \"classification\"\nalgorithm = \"random_forest\"\nparams = { n_tree = 5 }\ntraining_table = \"curated.customers\"\nlabel = \"churned\"\n[model.features]\nlogins = \"numeric\"\n",
    );
    let error = ws.run(&["train", "typo"]).fails_with(1);
    assert!(
        error.contains("model 'typo': params: random_forest has no parameter 'n_tree'; it has"),
        "{error}"
    );
    assert!(error.contains("n_trees"), "{error}");
    let error = ws.run(&["train", "nope"]).fails_with(1);
    assert!(
        error.contains("unknown model 'nope': the project declares churn, churn_forest"),
        "{error}"
    );

    let ws = project();
    ws.append_to_project(
        "\n[[model]]\nname = \"wrong\"\ntask = \"regression\"\nalgorithm = \"logistic_regression\"\ntraining_table = \"curated.customers\"\nlabel = \"spend\"\n[model.features]\nlogins = \"numeric\"\n",
    );
    let error = ws.run(&["models", "list"]).fails_with(1);
    assert!(
        error.contains(
            "[[model]] 'wrong': algorithm \"logistic_regression\" cannot learn task \"regression\""
        ),
        "{error}"
    );

    let ws = project();
    ws.append_to_project(
        "\n[[model]]\nname = \"kinds\"\ntask = \"classification\"\nalgorithm = \"decision_tree\"\ntraining_table = \"curated.customers\"\nlabel = \"churned\"\n[model.features]\ncontract = \"numeric\"\n",
    );
    let error = ws.run(&["train", "kinds"]).fails_with(1);
    assert!(
        error.contains("feature 'contract' is declared numeric but the column is Utf8View"),
        "{error}"
    );
}

#[test]
fn a_corrupt_manifest_or_table_is_reported_alone_and_blocks_nothing_else() {
    let ws = project();
    ws.run(&["train", "churn"]).ok();
    ws.run(&["train", "churn"]).ok();
    ws.run(&["models", "promote", "churn", "2", "--alias", "champion"])
        .ok();
    // A half-written manifest of the old version 1.
    let manifest = ws.lakehouse().join("_models/churn/1/manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, &text[..text.len() / 2]).unwrap();

    let list = ws.run(&["models", "list"]).ok();
    assert!(
        list.contains("churn:1  BROKEN: churn:1 cannot be used: its manifest cannot be read (_models/churn/1/manifest.json: EOF while parsing"),
        "{list}"
    );
    assert!(list.contains("churn:2 [champion]"), "{list}");
    // The champion scores; the broken version is refused by name.
    let scored = ws
        .run(&["score", "churn", "--input", "curated.customers"])
        .ok();
    assert!(scored.contains("scored with churn:2"), "{scored}");
    let error = ws.run(&["models", "show", "churn:1"]).fails_with(1);
    assert!(
        error.contains("churn:1 cannot be used: its manifest cannot be read")
            && error.contains("restore the file from a backup, or use another version"),
        "{error}"
    );
    // Training goes on past the broken number, and ops.model_versions lists the rest.
    let next = ws.run(&["train", "churn"]).ok();
    assert!(next.starts_with("churn:3 trained"), "{next}");
    assert_eq!(
        ws.csv("SELECT version FROM ops.model_versions WHERE model = 'churn' ORDER BY version"),
        "version\n2\n3\n"
    );

    // A torn last commit of one table: `tables` lists it with its error, the rest as usual.
    let log = ws
        .lakehouse()
        .join("scored/churn/_delta_log/00000000000000000000.json");
    let commit = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, &commit[..commit.len() / 2]).unwrap();
    let tables = ws.run(&["tables", "--format", "csv"]).ok();
    let line = |name: &str| {
        tables
            .lines()
            .find(|l| l.starts_with(&format!("{name},")))
            .unwrap_or_else(|| panic!("{name} missing:\n{tables}"))
            .to_string()
    };
    assert!(
        line("curated.customers").starts_with("curated.customers,1,600,"),
        "{tables}"
    );
    assert!(line("scored.churn").contains("cannot"), "{tables}");
    ws.csv("SELECT count(*) FROM curated.customers");
}

#[test]
fn concurrent_promotions_are_all_kept() {
    let ws = project();
    for _ in 0..3 {
        ws.run(&["train", "churn"]).ok();
    }
    let generations = ws.lakehouse().join("_models/churn/aliases");
    let newest_aliases = || -> serde_json::Value {
        let newest = std::fs::read_dir(&generations)
            .unwrap()
            .map(|e| e.unwrap().path())
            .max()
            .unwrap();
        serde_json::from_str(&std::fs::read_to_string(newest).unwrap()).unwrap()
    };
    let moves = [
        ("2", "champion"),
        ("3", "challenger"),
        ("3", "champion"),
        ("1", "challenger"),
    ];
    for round in 0..6 {
        let before = newest_aliases()["history"].as_array().unwrap().len();
        let children: Vec<_> = moves
            .iter()
            .map(|(version, alias)| {
                std::process::Command::new(env!("CARGO_BIN_EXE_lakescore"))
                    .args(["models", "promote", "churn", version, "--alias", alias])
                    .current_dir(ws.path())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        // Every promotion is in the history, and each alias points where its last move did.
        let aliases = newest_aliases();
        let history = aliases["history"].as_array().unwrap();
        assert_eq!(
            history.len(),
            before + moves.len(),
            "round {round}: {aliases}"
        );
        for alias in ["champion", "challenger"] {
            let last = history.iter().rev().find(|c| c["alias"] == alias).unwrap();
            assert_eq!(
                aliases["current"][alias], last["version"],
                "round {round}: {aliases}"
            );
        }
    }
    // `models list` shows where the aliases ended (both may name one version).
    let listed = ws.run(&["models", "list"]).ok();
    assert!(
        listed.contains("champion") && listed.contains("challenger"),
        "{listed}"
    );
}

#[test]
fn scoring_into_a_table_that_holds_no_predictions_is_refused_and_leaves_it_alone() {
    let ws = project();
    ws.run(&["train", "churn"]).ok();
    let rows = "select count(*) as n from curated.customers";
    let versions = || {
        ws.run(&["history", "curated.customers", "--format", "csv"])
            .ok()
            .lines()
            .map(|line| line.split(',').next().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    let (before, history) = (ws.csv(rows), versions());
    assert_eq!(history, ["version", "1", "0"]);
    let error = ws
        .run(&[
            "score",
            "churn",
            "--input",
            "curated.customers",
            "--output",
            "curated.customers",
        ])
        .fails_with(1);
    assert!(
        error.contains(
            "curated.customers is not a scored table: it has no column 'model_name'. Score into a new table"
        ),
        "{error}"
    );
    assert_eq!(ws.csv(rows), before);
    assert_eq!(versions(), history);
}

#[test]
fn an_explanation_as_long_as_the_largest_number_names_every_feature_once() {
    let ws = project();
    // The largest number a TOML file holds: far more features than any model has.
    ws.append_to_project("\n[functions]\ntop_features = 9223372036854775807\n");
    ws.run(&["train", "churn"]).ok();
    ws.run(&["score", "churn", "--input", "curated.customers"])
        .ok();
    assert_eq!(
        ws.csv(
            "SELECT count(*) AS n, min(cardinality(top_features)) AS fewest, \
             max(cardinality(top_features)) AS most FROM scored.churn"
        ),
        "n,fewest,most\n600,4,4\n"
    );
    assert_eq!(
        ws.csv(
            "SELECT count(*) AS entries, \
             count(DISTINCT concat(customer_id, '|', entry['feature'])) AS distinct_entries \
             FROM (SELECT customer_id, unnest(top_features) AS entry FROM scored.churn)"
        ),
        "entries,distinct_entries\n2400,2400\n"
    );
}
