//! `to_currency(amount, from_currency, to_currency)`: an amount converted between
//! currencies with the project's exchange rates.
//!
//! Rates come from `[functions.exchange_rates]` in `lakescore.toml`: a `base` currency and
//! how many units of each other currency one unit of the base buys
//! (`rates = { USD = 1.08, GBP = 0.86 }` with `base = "EUR"`). Currency codes are matched
//! case-insensitively. A currency without a rate fails the statement, naming it: a
//! silently missing conversion would put wrong numbers in every sum.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::types::{NativeType, logical_float64, logical_string};
use datafusion::common::{exec_err, plan_err};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{
    Coercion, ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignatureClass,
    Volatility,
};

use super::{finish, text_at};
use crate::config::FunctionsConfig;

const NAME: &str = "to_currency";

/// The project's exchange rates: units of each currency per unit of the base currency.
#[derive(Debug, Clone, Default)]
pub struct ExchangeRates {
    base: Option<String>,
    rates: BTreeMap<String, f64>,
}

impl ExchangeRates {
    /// The rates in the project's `[functions.exchange_rates]` section.
    pub fn from_config(config: &FunctionsConfig) -> Self {
        let section = &config.exchange_rates;
        Self {
            base: section.base.as_ref().map(|b| b.to_ascii_uppercase()),
            rates: section
                .rates
                .iter()
                .map(|(code, rate)| (code.to_ascii_uppercase(), *rate))
                .collect(),
        }
    }

    /// Units of `currency` per unit of the base currency.
    fn rate(&self, currency: &str) -> DfResult<f64> {
        let code = currency.trim().to_ascii_uppercase();
        if self.base.as_deref() == Some(code.as_str()) {
            return Ok(1.0);
        }
        match self.rates.get(&code) {
            Some(rate) if *rate > 0.0 => Ok(*rate),
            _ if self.base.is_none() => exec_err!(
                "{NAME}: no exchange rates configured: add [functions.exchange_rates] with base = \"EUR\" and rates = {{ {code} = ... }} to lakescore.toml"
            ),
            _ => exec_err!(
                "{NAME}: no exchange rate for currency '{currency}': add {code} = <units per 1 {}> to rates in [functions.exchange_rates] of lakescore.toml",
                self.base.as_deref().unwrap_or_default()
            ),
        }
    }
}

impl PartialEq for ExchangeRates {
    fn eq(&self, other: &Self) -> bool {
        self.base == other.base
            && self.rates.len() == other.rates.len()
            && self
                .rates
                .iter()
                .zip(&other.rates)
                .all(|((a, x), (b, y))| a == b && x.to_bits() == y.to_bits())
    }
}

impl Eq for ExchangeRates {}

impl Hash for ExchangeRates {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.base.hash(state);
        for (code, rate) in &self.rates {
            code.hash(state);
            rate.to_bits().hash(state);
        }
    }
}

/// The `to_currency` SQL function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToCurrency {
    signature: Signature,
    rates: ExchangeRates,
}

impl ToCurrency {
    /// The function with the project's rates.
    pub fn new(rates: ExchangeRates) -> Self {
        let amount = Coercion::new_implicit(
            TypeSignatureClass::Native(logical_float64()),
            vec![TypeSignatureClass::Numeric],
            NativeType::Float64,
        );
        let currency = Coercion::new_exact(TypeSignatureClass::Native(logical_string()));
        Self {
            signature: Signature::coercible(
                vec![amount, currency.clone(), currency],
                Volatility::Immutable,
            ),
            rates,
        }
    }
}

impl ScalarUDFImpl for ToCurrency {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let all_scalars = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [amounts, from, to] = arrays.as_slice() else {
            return plan_err!("{NAME}(amount, from_currency, to_currency) takes three arguments");
        };
        let amounts = cast(amounts, &DataType::Float64)?;
        let (from, to) = (cast(from, &DataType::Utf8)?, cast(to, &DataType::Utf8)?);
        let (Some(amounts), Some(from), Some(to)) = (
            amounts.as_any().downcast_ref::<Float64Array>(),
            from.as_any().downcast_ref(),
            to.as_any().downcast_ref(),
        ) else {
            return plan_err!(
                "{NAME}(amount, from_currency, to_currency): amount must be a number and currencies text"
            );
        };
        let mut converted = Vec::with_capacity(amounts.len());
        for row in 0..amounts.len() {
            let value = match (amounts.is_valid(row), text_at(from, row), text_at(to, row)) {
                (true, Some(from), Some(to)) => {
                    Some(amounts.value(row) / self.rates.rate(from)? * self.rates.rate(to)?)
                }
                _ => None,
            };
            converted.push(value);
        }
        finish(Arc::new(Float64Array::from(converted)), all_scalars)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ExchangeRatesConfig;

    fn rates() -> ExchangeRates {
        ExchangeRates::from_config(&FunctionsConfig {
            top_features: 3,
            pii_salt: None,
            exchange_rates: ExchangeRatesConfig {
                base: Some("EUR".into()),
                rates: BTreeMap::from([("usd".into(), 1.25), ("GBP".into(), 0.8)]),
            },
        })
    }

    #[test]
    fn converts_through_the_base() -> DfResult<()> {
        let rates = rates();
        assert_eq!(rates.rate("eur")?, 1.0);
        assert_eq!(100.0 / rates.rate("USD")? * rates.rate("GBP")?, 64.0);
        Ok(())
    }

    #[test]
    fn unknown_currency_names_itself() {
        let message = rates().rate("JPY").map(|_| ()).unwrap_err().to_string();
        assert!(
            message.contains("no exchange rate for currency 'JPY'"),
            "{message}"
        );
        assert!(message.contains("per 1 EUR"), "{message}");
    }
}
