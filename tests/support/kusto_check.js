// Compiles KQL with Kusto.Language, Microsoft's own parser and binder (npm
// @kusto/language-service-next), against the tables the caller declares.
//
// stdin:  {"tables": {"traces": "(timestamp:datetime, ...)", ...}, "queries": ["traces | ...", ...]}
// stdout: one result per query, in order:
//   diagnostics  [{severity, code, message, text}]: syntax and binding errors
//   analyzer     the same for Kusto.Language's analyzers (Warning, Suggestion: e.g. a join
//                without its kind, `contains` where `has` would do)
//   columns      [[name, type], ...]: the result's schema (null when the result is no table)
//   tables       the tables the query reads
//   operators    the query operators in the order written (FilterOperator, ...; a summarize
//                with a by clause is "SummarizeOperator by", a render "RenderOperator timechart")
//   functions    every function called
//   dynamic      each customDimensions.<name> read, in any form the parser takes (.name, ["name"],
//                ['name'], .['name'], through an alias or parse_json), with the function it is
//                passed to (null: none); name null when the key is not a literal
//   ago          the text of each ago(...) argument
//   comparisons  each comparison of a column (or customDimensions.<name>) with literals:
//                {operator, table, column, key, literals: [{type, value}], nonliteral, group,
//                negated, text}. The column is traced through aliases (extend, summarize,
//                project-rename) and value-preserving functions (tostring, take_anyif, ...);
//                table, column and key are null when the compared value is computed (a count).
//                Comparisons with the same group are and-ed; negated: under not().
"use strict";

const path = require("path");

const PACKAGE = path.join(__dirname, "..", "..", "node_modules", "@kusto", "language-service-next");
require(path.join(PACKAGE, "bridge.min.js"));
require(path.join(PACKAGE, "Kusto.Language.Bridge.min.js"));

const K = globalThis.Kusto.Language;
const Symbols = K.Symbols;

function tableSymbols(tables) {
  return Object.entries(tables).map(([name, schema]) => new Symbols.TableSymbol.$ctor7(name, schema, null));
}

function globalsWith(symbols) {
  const members = new (globalThis.System.Collections.Generic.List$1(Symbols.Symbol)).ctor();
  for (const symbol of symbols) members.add(symbol);
  const database = new Symbols.DatabaseSymbol.$ctor3("appinsights", null, members, false);
  return K.GlobalState.Default.WithDatabase(database);
}

function items(list) {
  const out = [];
  for (let i = 0; i < list.Count; i++) out.push(list.getItem(i));
  return out;
}

function kind(element) {
  return globalThis.Bridge.getTypeName(element).replace("Kusto.Language.Syntax.", "");
}

// The function a customDimensions read is an argument of, through the argument list's wrappers.
function calledWith(element) {
  let parent = element.Parent;
  while (parent && /^(SeparatedElement|SyntaxList|ExpressionList)/.test(kind(parent))) {
    parent = parent.Parent;
  }
  return parent && kind(parent) === "FunctionCallExpression" ? parent.Name.SimpleName : null;
}

function items_of(list) {
  return items(list).map((separated) => separated.Element);
}

// The key a PathExpression (.name, .['name']) or ElementExpression (["name"], [@"name"]) reads.
function dimensionName(element) {
  const selector = element.Selector;
  if (kind(selector) === "NameReference") return selector.SimpleName;
  const key = selector.Expression;
  return key && key.IsLiteral && key.LiteralValue !== null ? String(key.LiteralValue) : null;
}

// Functions whose result is (a conversion of) their first argument's value: a comparison of
// their result is one of that argument's values.
const PRESERVING = new Set([
  "tostring", "toint", "tolong", "todouble", "toreal", "todecimal", "tobool", "toboolean",
  "todatetime", "totimespan", "toguid", "todynamic", "parse_json", "take_any", "take_anyif",
  "any", "anyif", "min", "max", "minif", "maxif",
]);

// What value an expression is: {table, column, key} (key: a customDimensions name), following
// aliases (declared: symbol -> its expression) and value-preserving functions; null otherwise.
function origin(expression, declared, tables) {
  if (!expression) return null;
  const k = kind(expression);
  if (k === "ParenthesizedExpression") return origin(expression.Expression, declared, tables);
  if (k === "FunctionCallExpression") {
    const [first] = items_of(expression.ArgumentList.Expressions);
    return PRESERVING.has(expression.Name.SimpleName) ? origin(first, declared, tables) : null;
  }
  if (k === "PathExpression" || k === "ElementExpression") {
    const root = origin(expression.GetChild(0), declared, tables);
    if (root && root.key === null && DYNAMIC_COLUMNS.has(root.column)) {
      return { table: root.table, column: root.column, key: dimensionName(expression) };
    }
    return null;
  }
  if (k === "NameReference") {
    const symbol = expression.ReferencedSymbol;
    if (!symbol || !globalThis.Bridge.is(symbol, Symbols.ColumnSymbol)) return null;
    if (declared.has(symbol)) return origin(declared.get(symbol), declared, tables);
    const table = tables.find((t) => items(t.Columns).includes(symbol));
    return { table: table ? table.Name : null, column: symbol.Name, key: null };
  }
  return null;
}

const DYNAMIC_COLUMNS = new Set(["customDimensions", "customMeasurements"]);
const NOT_COMPARISONS = new Set(["and", "or", "+", "-", "*", "/", "%"]);
const LIST_COMPARISONS = new Set(["InExpression", "HasAnyExpression", "HasAllExpression"]);

function literal(expression) {
  const type = expression.ResultType ? expression.ResultType.Name : null;
  const value = expression.LiteralValue;
  const plain = value === null || ["string", "number", "boolean"].includes(typeof value);
  return { type, value: plain ? value : expression.toString().trim() };
}

// The comparison of one column with literals that ``element`` is, or null.
function comparison(element, declared, tables) {
  const k = kind(element);
  let compared;
  let operands;
  if (LIST_COMPARISONS.has(k)) {
    compared = element.Left;
    operands = items_of(element.Right.Expressions);
  } else if (k === "BinaryExpression" && !NOT_COMPARISONS.has(element.Operator.Text)) {
    [compared, operands] = element.Right.IsLiteral
      ? [element.Left, [element.Right]]
      : [element.Right, [element.Left]];
  } else {
    return null;
  }
  const literals = operands.filter((operand) => operand.IsLiteral);
  if (literals.length === 0) return null;
  let top = element;
  while (top.Parent && andOrParentheses(top.Parent)) top = top.Parent;
  let negated = false;
  for (let up = element.Parent; up; up = up.Parent) {
    if (kind(up) === "FunctionCallExpression" && up.Name.SimpleName === "not") negated = true;
  }
  const found = origin(compared, declared, tables) || { table: null, column: null, key: null };
  return {
    operator: element.Operator.Text.toLowerCase(),
    ...found,
    literals: literals.map(literal),
    nonliteral: literals.length !== operands.length,
    group: top.TextStart,
    negated,
    text: element.toString().trim(),
  };
}

function andOrParentheses(element) {
  const k = kind(element);
  return k === "ParenthesizedExpression" || (k === "BinaryExpression" && element.Operator.Text === "and");
}

function described(diagnostics, text) {
  return items(diagnostics).map((d) => ({
    severity: String(d.Severity),
    code: d.Code,
    message: d.Message,
    text: text.substr(d.Start, d.Length),
  }));
}

function check(text, globals, tables) {
  const code = K.KustoCode.ParseAndAnalyze(text, globals);
  // Each column an extend, summarize or project-rename declares -> the expression it names.
  const declared = new Map();
  code.Syntax.WalkElements((element) => {
    if (!element.IsToken && kind(element) === "SimpleNamedExpression") {
      declared.set(element.Name.ReferencedSymbol, element.Expression);
    }
  });
  const service = new K.Editor.KustoCodeService.ctor(code);
  const result = {
    diagnostics: described(code.GetDiagnostics(), text),
    analyzer: described(service.GetAnalyzerDiagnostics(true), text),
    columns: null,
    tables: [],
    operators: [],
    functions: [],
    dynamic: [],
    ago: [],
    comparisons: [],
  };
  const type = code.ResultType;
  if (type && type.Columns) {
    result.columns = items(type.Columns).map((c) => [c.Name, c.Type.Name]);
  }
  code.Syntax.WalkElements((element) => {
    if (element.IsToken) return;
    const k = kind(element);
    if (k.endsWith("Operator") && !k.startsWith("SyntaxList")) {
      let detail = "";
      if (k === "SummarizeOperator" && element.ByClause) detail = " by";
      if (k === "RenderOperator") detail = ` ${element.ChartType.Text}`;
      result.operators.push(k + detail);
    }
    if (k === "NameReference" && element.ReferencedSymbol) {
      const symbol = element.ReferencedSymbol;
      const table = globalThis.Bridge.is(symbol, Symbols.TableSymbol);
      if (table && !result.tables.includes(symbol.Name)) result.tables.push(symbol.Name);
    }
    if (k === "FunctionCallExpression") {
      const name = element.Name.SimpleName;
      result.functions.push(name);
      if (name === "ago") {
        result.ago.push(element.ArgumentList.toString().trim().slice(1, -1).trim());
      }
    }
    if (k === "PathExpression" || k === "ElementExpression") {
      const read = origin(element, declared, tables);
      if (read && read.column === "customDimensions") {
        result.dynamic.push({ name: read.key, within: calledWith(element) });
      }
    }
    const compared = comparison(element, declared, tables);
    if (compared) result.comparisons.push(compared);
  });
  return result;
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const request = JSON.parse(input);
  const tables = tableSymbols(request.tables);
  const globals = globalsWith(tables);
  process.stdout.write(JSON.stringify(request.queries.map((q) => check(q, globals, tables))));
});
