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
//   dynamic      each customDimensions.<name> read, with the function it is passed to (null: none)
//   ago          the text of each ago(...) argument
"use strict";

const path = require("path");

const PACKAGE = path.join(__dirname, "..", "..", "node_modules", "@kusto", "language-service-next");
require(path.join(PACKAGE, "bridge.min.js"));
require(path.join(PACKAGE, "Kusto.Language.Bridge.min.js"));

const K = globalThis.Kusto.Language;
const Symbols = K.Symbols;

function globalsWith(tables) {
  const members = new (globalThis.System.Collections.Generic.List$1(Symbols.Symbol)).ctor();
  for (const [name, schema] of Object.entries(tables)) {
    members.add(new Symbols.TableSymbol.$ctor7(name, schema, null));
  }
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

function dimensionName(element) {
  const selector = element.GetChild(element.ChildCount - 1);
  return selector.toString().trim().replace(/^\[\s*["']?|["']?\s*\]$/g, "");
}

function described(diagnostics, text) {
  return items(diagnostics).map((d) => ({
    severity: String(d.Severity),
    code: d.Code,
    message: d.Message,
    text: text.substr(d.Start, d.Length),
  }));
}

function check(text, globals) {
  const code = K.KustoCode.ParseAndAnalyze(text, globals);
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
    if ((k === "PathExpression" || k === "ElementExpression") && element.ChildCount > 0) {
      const root = element.GetChild(0);
      if (kind(root) === "NameReference" && root.SimpleName === "customDimensions") {
        result.dynamic.push({ name: dimensionName(element), within: calledWith(element) });
      }
    }
  });
  return result;
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const request = JSON.parse(input);
  const globals = globalsWith(request.tables);
  process.stdout.write(JSON.stringify(request.queries.map((q) => check(q, globals))));
});
